//! Layer 4: the runtime that runs tasks in agent processes.
//!
//! - [`task`]: kinds, specs, outcomes, failures — what the supervisor and agents agree on.
//! - [`typed`]: task kinds with serde-typed inputs and outputs over the byte API.
//! - [`agent`]: the loop inside each agent process and the registry of task handlers.
//! - [`bus`]: the runtime's topics on the shared-memory bus (control, progress).
//! - [`spawn`]: starting processes that inherit the segment; [`launch`]: starting agents
//!   without copying the supervisor (`CLONE_VM | CLONE_VFORK`).
//! - [`cgroup`]: per-agent isolation, v1 and v2; [`procfs`]: what `/proc` tells of a
//!   process (CPU time, resident memory, open descriptors).
//! - [`sandbox`]: what each agent gives up before its first task (seccomp, Landlock,
//!   capabilities, limits).
//! - [`supervisor`]: spawning, dispatch, death detection, recovery.

pub mod agent;
pub mod bus;
pub mod cgroup;
pub mod launch;
pub mod probes;
pub mod procfs;
pub mod sandbox;
pub mod spawn;
pub mod supervisor;
pub mod task;
pub mod typed;
