//! Many hosts on NATS JetStream: each host runs its local swarm as `swarm run` does, and
//! documents travel between hosts as JetStream messages.
//!
//! - [`worker`]: `swarm worker` pulls documents from the jobs' work queue, runs them on
//!   this host's swarm, publishes each line, and acks a document only once its line is
//!   stored; while a document runs, in-progress acks keep its ack deadline short. A worker
//!   killed, stopped or cut off leaves its documents unacked: they are delivered again
//!   after the deadline and done elsewhere.
//! - [`submit`]: `swarm submit` stores the PDFs by content hash (identical files once),
//!   publishes one message per document with a deduplication id, and writes the results
//!   as `swarm run` does: one line per document, the same summary and exit status.
//! - `nats`: the streams and the calls on them.
//! - [`server`]: a `nats-server` of our own on loopback (benches, tests).
//! - `poison` and [`lease`]: a document delivered as often as allowed without a line gets
//!   an error line, from the one worker that holds a key-value lease.
//! - `gateway`: the one thread with a tokio runtime that holds the NATS client; the
//!   supervisor and its agents stay synchronous and never talk to NATS.

pub(crate) mod gateway;
pub mod lease;
pub(crate) mod nats;
pub(crate) mod poison;
pub mod server;
pub mod submit;
pub mod worker;

/// Why a worker or a submitter stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The NATS side: connecting, a stream, the store, a publish.
    #[error("nats: {0}")]
    Nats(String),
    /// The gateway thread.
    #[error("the NATS gateway: {0}")]
    Gateway(String),
    /// The local swarm.
    #[error(transparent)]
    Run(#[from] crate::pdf::job::RunError),
    /// Local files: the spool, the output, an input.
    #[error("{0}")]
    Io(String),
    /// Asked for something that cannot be: a job that is not there, a bad name.
    #[error("{0}")]
    Usage(String),
}
