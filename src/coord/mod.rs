//! Coordination above the single task: graphs of tasks built by node, checked and
//! ordered here, and run by the supervisor ([`crate::supervisor::Supervisor::submit_graph`]);
//! and the patterns built on them: map-reduce, pipeline, scatter-gather, vote.

pub mod graph;
pub mod patterns;

pub use graph::{Graph, GraphError, NodeId, Run};
pub use patterns::{
    CopyOutput, Gathered, MapReduce, PatternError, Pipeline, ScatterGather, Verdict, Vote,
};
