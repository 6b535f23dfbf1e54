//! Layer 6: diagnostics. The benchmark suite behind `swarm bench` (every comparison
//! measured in one run, so that ratios survive a noisy machine) and the diagnostic
//! [`peer`] loops that the cross-process tests and `swarm bench ring` start in agents.

pub mod graph;
pub mod peer;
#[cfg(feature = "pdf")]
pub mod pipeline;
pub mod ring;
pub mod sched;
pub mod tasks;

pub use ring::{render_ring, ring, RingBenchConfig, RingBenchReport};
