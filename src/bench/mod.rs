//! The benchmark suite behind `swarm bench`: every comparison measured in one run, so that
//! ratios survive a noisy machine.

pub mod pipeline;
pub mod ring;
pub mod tasks;

pub use ring::{render_ring, ring, RingBenchConfig, RingBenchReport};
