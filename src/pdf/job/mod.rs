//! `swarm run`: many PDFs through the swarm, one JSON line per document.
//!
//! Two ways through, with the same output line by line:
//! - **Generalists** (the default): each document starts as one [`PDF_DOC`] task (open,
//!   count pages, extract the first chunk); a document longer than a chunk is spread over
//!   agents as [`PDF_PAGES`] range tasks, and its line is assembled here once every range
//!   is in.
//! - **Specialists** (`--roles`): once a Parser has told a document's page count, the
//!   document is a task graph: each range goes Parser → Extractor → Analyzer, each
//!   stage's output kept in the supervisor's page buffers and lent to the next stage
//!   without another copy, and an Aggregator fans the ranges into the line (see
//!   [`super::stages`]). How far the Parsers run ahead is the supervisor's graph flow
//!   control, so the job routes outcomes and nothing else.
//!
//! A document that exceeds its time budget, or whose tasks keep killing their agents, ends
//! as an error line; nothing else is held up by it.
//!
//! Nothing an agent writes is trusted: every generalist reply is parsed as JSON before a
//! byte of it reaches the output. That check is most of the job's CPU per page, so it
//! runs on a few checker threads (`Checkers`) and the job thread only routes tasks and
//! writes lines.
//!
//! The files, each using only those above it:
//!
//! ```text
//! config        RunConfig, Roles: what to run
//! inputs        the file walk: PDF files under the paths given
//! sizing        page buffers, budgets and windows, from the agent count
//! validate      what an agent's output must be before the job believes it
//! checkers      threads that check generalists' replies off the job thread
//! state         the job's documents and tasks, and how a task is submitted
//! generalists   one-stage tasks: a document's first chunk, then its ranges
//! specialists   a document as a graph: Parser -> Extractor -> Analyzer -> Aggregator
//! event_loop    Engine, run(): documents in, outcomes routed, deadlines, lines out
//! journal       --journal: finished documents recorded, so a rerun writes what is missing
//! ```
//!
//! [`PDF_DOC`]: super::tasks::PDF_DOC
//! [`PDF_PAGES`]: super::tasks::PDF_PAGES

mod checkers;
mod config;
mod event_loop;
mod generalists;
mod inputs;
pub mod journal;
mod sizing;
mod specialists;
mod state;
mod validate;

pub use checkers::INLINE_AGENTS as INLINE_CHECK_AGENTS;
pub use config::{ParseRolesError, Roles, RunConfig};
pub(crate) use event_loop::{build_supervisor, run_on, Engine, Plan};
pub use event_loop::{run, RunError, RunSummary};
pub(crate) use inputs::content_hash_of;
pub use inputs::{collect_inputs, read_roots};
pub use journal::{Journal, JournalError};
pub use state::DocLimits;
