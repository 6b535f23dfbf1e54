//! What can go wrong with a document or a page: a [`PdfError`] with its [`ErrorKind`].
//!
//! The kind is what `swarm run` and `swarm extract` report (`"error": {"kind", "message"}`);
//! every layer of the PDF side returns these, from the lexer up to the job.

use serde::Serialize;

/// What kind of failure, as reported in `swarm run` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not a readable PDF.
    Malformed,
    /// Encrypted with a password we do not have.
    Encrypted,
    /// Uses something we do not handle.
    Unsupported,
    /// Ran past its time limit.
    Timeout,
    /// Its agent kept dying on it.
    AgentCrashed,
    /// Needs more memory than allowed.
    TooLarge,
    /// Could not be read from disk.
    Io,
}

/// A failure with its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct PdfError {
    /// The kind.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl PdfError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
