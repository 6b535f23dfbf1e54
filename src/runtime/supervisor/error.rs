//! What the supervisor's public calls can fail with.

use super::probe::ProbeError;
use crate::runtime::cgroup;
use crate::runtime::task::TaskKind;
use std::path::PathBuf;

/// Why [`Supervisor::recv`](super::Supervisor::recv) has no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The timeout passed; detached tasks are still open.
    #[error("no result within the timeout")]
    Timeout,
    /// No detached task is open, and every result has been received.
    #[error("no detached task is open")]
    Empty,
    /// The supervisor has stopped, and every result has been received.
    #[error("the supervisor has stopped")]
    Stopped,
}

/// Supervisor errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The segment could not be created.
    #[error(transparent)]
    Segment(#[from] crate::shm::segment::SegmentError),
    /// A sandbox measure was required and this kernel or process cannot have it.
    #[error("sandbox required but unavailable: {0}")]
    Sandbox(#[from] crate::runtime::sandbox::SandboxError),
    /// Cgroups were required and are not available.
    #[error("cgroups required but unavailable: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
    /// A system call failed.
    #[error("{0}: {1}")]
    Os(&'static str, std::io::Error),
    /// Agents keep dying before becoming ready.
    #[error("crash loop: {0}")]
    CrashLoop(String),
    /// The supervisor is shutting down or has stopped.
    #[error("the supervisor has stopped")]
    Stopped,
    /// The page-buffer slab refused: no room, or a chain that does not check out.
    #[error(transparent)]
    Slab(#[from] crate::shm::slab::SlabError),
    /// A [`Held`](crate::runtime::task::Held) output that the supervisor does not hold (already used or freed).
    #[error("no such held output")]
    UnknownHeld,
    /// A task kind no agent serves (the agent executable does not register it, or no
    /// agent class takes it).
    #[error("no agent takes task kind {0}")]
    NoAgentForKind(TaskKind),
    /// A task spec that contradicts itself.
    #[error("invalid task: {0}")]
    InvalidTask(&'static str),
    /// A graph that cannot run as given (out of order, a node naming itself, inputs given
    /// twice), saying which node and why.
    #[error("invalid graph: {0}")]
    BadGraph(String),
    /// A payload larger than the slab can lend one task (half its bytes).
    #[error(
        "payload of {len} bytes exceeds the {limit} bytes the page-buffer slab lends one task \
         (half of {buffers} buffers of {buffer_size} bytes; see SupervisorBuilder::buffers)"
    )]
    PayloadTooLarge {
        /// The payload's length.
        len: u64,
        /// The most one task may carry.
        limit: u64,
        /// Buffers in the slab.
        buffers: u32,
        /// Bytes per buffer.
        buffer_size: u32,
    },
    /// The agent executable cannot serve: missing, not executable, or not an agent of this
    /// build's layout.
    #[error("agent executable {}: {problem}", path.display())]
    AgentBinary {
        /// The executable.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: ProbeError,
    },
    /// This process was started as an agent probe: it must serve as an agent
    /// ([`crate::runtime::agent::serve_if_agent`]), not start supervisors of its own.
    #[error(
        "this process was started by a supervisor as an agent, but it did not call \
         neuralflow_swarm::agent::serve_if_agent at the top of main"
    )]
    StartedAsAgent,
    /// A bus topic that does not exist, or may not be written by the caller.
    #[error(transparent)]
    Topic(#[from] crate::shm::segment::TopicError),
    /// A large bus message past what the bus may keep in page buffers.
    #[error("a bus message of {len} bytes does not fit: the bus keeps at most {limit} bytes of large messages (an eighth of the page buffers)")]
    BusFull {
        /// The message's length.
        len: u64,
        /// What the bus may keep.
        limit: u64,
    },
    /// The shared state refused: a key or value too large, the table full, an entry
    /// stuck mid-write.
    #[error("shared state: {0}")]
    State(#[from] crate::shm::kv::KvError),
    /// A typed task's input did not encode.
    #[error("input does not encode: {0}")]
    Encode(String),
}
