//! Layer 5: operating a swarm.
//!
//! - [`view`]: [`View`], one snapshot of a running swarm (agents, queues, counters, the
//!   job's documents, the supervisor's own CPU and memory), which every observer below
//!   reads.
//! - [`metrics`]: the view as Prometheus exposition (`GET /metrics`).
//! - [`control`]: the status socket each swarm opens, how `swarm status` and `swarm top`
//!   find a swarm and read its view, and the throughput history the socket keeps.
//! - [`http`]: the HTTP server (axum on its own tokio thread) that `swarm run --metrics`
//!   and `swarm serve` answer on.
//! - [`run`]: `swarm run` watched: the job with the status socket and `/metrics`.
//! - [`jobs`]: `swarm serve`'s jobs: many at once through one engine, each with its
//!   documents, status and result lines.
//! - [`api`]: `swarm serve`'s HTTP API over the jobs.
//! - [`serve`]: `swarm serve` itself: the swarm, the engine, the API, the signals.

pub mod api;
pub mod control;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod run;
pub mod serve;
pub mod view;

pub use view::{Tally, View};
