//! Typed tasks: a task kind with serde-typed input and output, registered in agents and
//! submitted by the supervisor under one Rust type, so that both ends agree at compile
//! time on what crosses the process boundary.
//!
//! ```no_run
//! use neuralflow_swarm::agent::{serve_if_agent, Registry, TaskContext};
//! use neuralflow_swarm::supervisor::{Shutdown, Supervisor};
//! use neuralflow_swarm::task::{TaskError, TaskKind};
//! use neuralflow_swarm::typed::Task;
//!
//! struct Upper;
//!
//! impl Task for Upper {
//!     const KIND: TaskKind = TaskKind(1000);
//!     const NAME: &'static str = "upper";
//!     type Input = String;
//!     type Output = String;
//!     fn run(&self, _ctx: &TaskContext<'_>, input: String) -> Result<String, TaskError> {
//!         Ok(input.to_uppercase())
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     serve_if_agent(|| {
//!         let mut registry = Registry::new();
//!         registry.add(Upper).expect("a new kind");
//!         registry
//!     });
//!     let sup = Supervisor::builder().agents(2).agent_current_exe().build()?;
//!     let shout = sup.submit_task::<Upper>(&"hello".to_string())?;
//!     assert_eq!(shout.wait(None).expect("no timeout")?, "HELLO");
//!     sup.shutdown(Shutdown::Drain)?;
//!     Ok(())
//! }
//! ```
//!
//! Inputs and outputs travel as JSON through the page-buffer slab. The byte API
//! ([`crate::runtime::task::TaskSpec`]) stays underneath for zero-copy work: page buffers,
//! held outputs handed from stage to stage.

use super::agent::TaskContext;
use super::task::{TaskError, TaskKind};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A task kind with typed input and output.
pub trait Task: Send + Sync + 'static {
    /// The kind it is registered and submitted under (from
    /// [`crate::runtime::task::kinds::FIRST_USER`] up for an embedder's own kinds).
    const KIND: TaskKind;
    /// A name for logs and status.
    const NAME: &'static str;
    /// What the caller sends.
    type Input: Serialize + DeserializeOwned;
    /// What the agent returns.
    type Output: Serialize + DeserializeOwned;

    /// Runs in the agent.
    fn run(&self, ctx: &TaskContext<'_>, input: Self::Input) -> Result<Self::Output, TaskError>;
}

/// Encodes a typed value for the wire.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

/// Decodes a typed value from the wire.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}
