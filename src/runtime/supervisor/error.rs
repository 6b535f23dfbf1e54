//! What the supervisor's public calls can fail with.

use super::*;

/// Supervisor errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The segment could not be created.
    #[error(transparent)]
    Segment(#[from] crate::shm::segment::SegmentError),
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
    /// A [`Held`] output that the supervisor does not hold (already used or freed).
    #[error("no such held output")]
    UnknownHeld,
    /// A task no agent class accepts.
    #[error("no agent takes task kind {0}")]
    NoAgentForKind(u32),
    /// A task spec that contradicts itself.
    #[error("invalid task: {0}")]
    InvalidTask(&'static str),
}
