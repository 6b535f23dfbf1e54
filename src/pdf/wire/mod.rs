//! The JSON that travels between the job and its agents, and the line that goes out: one
//! definition of each, with its encoder, its decoder and its one renderer side by side.
//!
//! - [`reply`]: a task's request ([`PageRequest`]) and its reply ([`PageReply`]), as an
//!   agent writes it and as the supervisor checks it ([`CheckedReply`]) before a byte of
//!   it reaches the output.
//! - [`scan`]: the JSON checker both go through: the whole grammar, without building it.
//! - [`mod@line`]: a document's output line (`{"path","status","page_count","pages","error"?}`),
//!   rendered by one function from either a typed in-process result ([`DocResult`], what
//!   `swarm extract` writes) or checked replies ([`Assembly`], what `swarm run` writes), so
//!   that the two commands cannot disagree on a document's status or error.
//!
//! The binary frames that pass between the specialist roles are in [`super::frames`].

pub mod line;
pub mod reply;
pub mod scan;

pub use line::{Assembly, DocResult, Status};
pub use reply::{one_line, CheckedReply, PageReply, PageRequest, ReplyError};
