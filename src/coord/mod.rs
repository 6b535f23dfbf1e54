//! Coordination above the single task: graphs of tasks built by node, checked and
//! ordered here, and run by the supervisor ([`crate::supervisor::Supervisor::submit_graph`]).

pub mod graph;

pub use graph::{Graph, GraphError, NodeId, Run};
