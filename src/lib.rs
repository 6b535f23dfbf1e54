//! neuralflow-swarm: process PDFs in parallel across agent processes on one host,
//! coordinated through shared memory.
//!
//! The crate is layered; each layer uses only the ones above it in this list:
//!
//! 1. Shared-memory primitives: [`plain`] (what may live in shared memory), the
//!    loom-swappable `sync` shims, [`futex`] wait words.
//! 2. Building blocks generic over their storage: [`ring`] (SPSC descriptor rings),
//!    [`slab`] (page buffers and their ownership ledger), [`heartbeat`] words, and the
//!    [`descriptor`] that travels through rings.
//! 3. [`segment`]: the memfd segment that places those blocks in one mapping shared by the
//!    supervisor and its agents; [`spawn`] starts processes that inherit it.
//! 4. The runtime: [`task`] (kinds, specs, outcomes), [`agent`] (the loop inside each agent
//!    process), [`cgroup`] (per-agent isolation, v1 and v2), [`supervisor`] (spawning,
//!    dispatch, death detection, recovery).
//! 5. [`peer`] and [`bench`](mod@bench): cross-process diagnostic peers and the benchmark suite
//!    (`swarm bench ring`, `swarm bench tasks`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod agent;
pub mod bench;
pub mod cgroup;
/// The `swarm` command line's policy: flags to configurations, reports, exit codes.
pub mod cli;
pub mod descriptor;
pub mod futex;
pub mod heartbeat;
pub mod pdf;
pub mod peer;
pub mod plain;
pub mod ring;
pub mod segment;
pub mod slab;
pub mod spawn;
pub mod supervisor;
pub mod sync;
pub mod task;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
