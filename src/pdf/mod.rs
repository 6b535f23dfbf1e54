//! PDF text extraction, and the job that runs it across agents.
//!
//! Layered, each part using only those before it:
//!
//! 1. [`error`]: what can fail, with its [`ErrorKind`].
//! 2. The extraction core: [`lexer`], [`font`] and [`fontfile`] (codes to Unicode and
//!    widths), [`interp`] (content streams to positioned glyphs), [`layout`] (glyphs to
//!    words, lines and blocks), [`bundle`] (a page cut out as a one-page PDF), and
//!    [`document`], which ties them together per page.
//! 3. [`wire`]: the JSON of requests, replies and output lines, with the one renderer of
//!    a document's result; [`frames`]: the binary frames between the specialist roles.
//! 4. Where extraction runs: [`extract`] (in this process, `swarm extract`), [`tasks`] and
//!    [`stages`] (the task kinds agents serve: one-stage, and the four roles).
//! 5. [`job`]: `swarm run`, the documents through the swarm; [`demo`]: a generated
//!    corpus checked against its own text.

pub mod bundle;
pub mod demo;
pub mod document;
pub mod error;
pub mod extract;
pub mod font;
pub mod fontfile;
pub mod frames;
pub(crate) mod hash;
pub(crate) mod inflate;
pub mod interp;
pub mod job;
pub mod layout;
pub mod lexer;
mod objects;
mod open;
pub mod stages;
pub mod tasks;
pub mod wire;

pub use document::{analyze, Document, Page, PageGlyphs};
pub use error::{ErrorKind, PdfError};
pub use extract::extract_file;
pub use wire::{Assembly, DocResult, Status};
