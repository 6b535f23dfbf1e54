//! neuralflow-swarm: process PDFs in parallel across agent processes on one host,
//! coordinated through shared memory.
//!
//! The crate is layered; each layer uses only the ones above it in this list, and each
//! has its folder:
//!
//! 1. [`shm`]: shared-memory primitives, the building blocks that live in shared memory
//!    (rings, the page-buffer slab, heartbeat words, descriptors) and the memfd segment
//!    that places them.
//! 2. [`runtime`]: tasks, the agent loop and its handler registry, process spawning,
//!    cgroups, and the supervisor.
//! 3. [`coord`]: coordination above the single task: graphs of tasks.
//! 4. `pdf`: the PDF extraction core, the reply's wire format, and the `swarm run` job
//!    built on the runtime (generalist and specialist strategies, checkers, inputs).
//! 5. `service`: operating a swarm — `swarm serve`'s jobs and HTTP API, Prometheus
//!    metrics, the status socket `swarm status` and `swarm top` read.
//! 6. `bench`: diagnostics — the benchmark suite and the diagnostic peers.
//! 7. `cli`: the `swarm` command line's policy (flags to configurations, reports, exit
//!    codes); the binaries only parse, call it and exit.
//!
//! Features, all on by default: `pdf` (layer 4, its dependencies and the PDF kinds in
//! `agent-bin`), `service` (layer 5; implies `pdf`) and `cli` (layer 7 and the `swarm`
//! binary; implies `service`). Without them
//! the crate is the runtime alone, layers 1, 2, 3 and 6, and an embedder's build pulls in
//! neither lopdf nor clap nor tokio.
//!
//! The layers' modules are also re-exported at the crate root under their own names
//! (`neuralflow_swarm::supervisor`, `neuralflow_swarm::ring`, ...).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod bench;
/// The `swarm` command line's policy: flags to configurations, reports, exit codes.
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod coord;
#[cfg(feature = "pdf")]
pub mod pdf;
pub mod runtime;
#[cfg(feature = "service")]
pub mod service;
pub mod shm;

pub use bench::peer;
pub use runtime::{agent, cgroup, launch, sandbox, spawn, supervisor, task, typed};
pub use shm::{bus, descriptor, futex, heartbeat, kv, plain, ring, segment, slab, sync};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
