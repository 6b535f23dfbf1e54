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
//! 4. [`peer`] and [`bench`]: the cross-process peers and the microbenchmark suite
//!    (`swarm bench ring`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod bench;
pub mod descriptor;
pub mod futex;
pub mod heartbeat;
pub mod peer;
pub mod plain;
pub mod ring;
pub mod segment;
pub mod slab;
pub mod spawn;
pub mod sync;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
