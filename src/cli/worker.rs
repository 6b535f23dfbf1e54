//! `swarm worker`: the flags, the worker, and its exit status (0 once stopped by a
//! signal and drained, 1 if it could not start or failed, 2 on bad usage).

use super::args::SwarmArgs;
use super::{Done, Error};
use crate::cluster::worker::{run_worker, WorkerConfig};
use crate::cluster::ClusterError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `swarm worker`'s flags.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The NATS servers (with JetStream), comma-separated, e.g. `nats://127.0.0.1:4222`;
    /// the client moves to another when one fails.
    #[arg(long, value_name = "URL[,URL...]")]
    pub nats: String,
    /// Copies of each stream and bucket, where this command is the first to make them: 1
    /// on a single server, 3 on a cluster (then any one server may fail).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// The agents.
    #[command(flatten)]
    pub swarm: SwarmArgs,
    /// Where documents are kept while they run (default: a private folder under the
    /// temporary directory, removed at exit). The agents may read it and nothing else.
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// Per-agent memory limit (e.g. 1G).
    #[arg(long, value_parser = crate::task::parse_size)]
    pub memory_limit: Option<u64>,
    /// Pages per task when a document is spread across agents.
    #[arg(long, default_value_t = 16)]
    pub chunk_pages: u32,
    /// How long a document may go unacknowledged before it is delivered again (in-progress
    /// acks keep a running one alive); set when the first worker creates the workers'
    /// consumer.
    #[arg(long, default_value = "30s", value_parser = crate::task::parse_duration)]
    pub ack_wait: Duration,
    /// Deliveries of one document at most (set with the consumer, as `--ack-wait`); then
    /// it gets an error line.
    #[arg(long, default_value_t = 5)]
    pub max_deliver: i64,
    /// How long the lease of the one worker that reports documents out of deliveries
    /// lasts unrenewed (set when the first worker creates its bucket).
    #[arg(long, default_value = "10s", value_parser = crate::task::parse_duration)]
    pub lease: Duration,
}

/// Runs `swarm worker` until SIGTERM or SIGINT; a second signal ends it at once.
pub fn run(a: WorkerArgs) -> Result<Done, Error> {
    if a.max_deliver < 1 {
        return Err(Error::usage(
            "swarm worker: --max-deliver must be at least 1",
        ));
    }
    let cfg = WorkerConfig {
        run: crate::pdf::job::RunConfig {
            memory_limit: a.memory_limit,
            chunk_pages: a.chunk_pages,
            // Documents come one at a time from the queue: none is known to be a copy.
            cache: false,
            ..a.swarm.config(Vec::new())
        },
        nats: a.nats,
        replicas: usize::from(a.replicas),
        spool: a.spool,
        ack_wait: a.ack_wait,
        max_deliver: a.max_deliver,
        lease: a.lease.max(Duration::from_secs(1)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone()).map_err(|e| Error::fatal(format!("swarm worker: {e}")))?;
    match run_worker(&cfg, &stop) {
        Ok(s) => {
            tracing::info!(
                stored = s.stored,
                duplicates = s.duplicates,
                pages = s.pages,
                poison_reported = s.poison_reported,
                unstored = s.unstored,
                "worker stopped"
            );
            Ok(Done::Ok)
        }
        Err(ClusterError::Usage(m)) => Err(Error::usage(format!("swarm worker: {m}"))),
        Err(e) => Err(Error::fatal(format!("swarm worker: {e}"))),
    }
}

/// The first SIGTERM or SIGINT stops the worker taking documents (it finishes those it
/// has); the second ends the process.
fn watch_signals(stop: Arc<AtomicBool>) -> std::io::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    // Blocked here, before any other thread starts, so every thread inherits the mask
    // and the signals wait for the thread below.
    set.thread_block().map_err(std::io::Error::from)?;
    std::thread::Builder::new()
        .name("swarm-signals".into())
        .spawn(move || {
            let mut seen = 0;
            while let Ok(sig) = set.wait() {
                seen += 1;
                if seen > 1 {
                    std::process::exit(128 + sig as i32);
                }
                tracing::info!(signal = ?sig, "draining");
                // Release: pairs with the worker's Acquire load.
                stop.store(true, Ordering::Release);
            }
        })?;
    Ok(())
}
