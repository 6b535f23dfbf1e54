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

impl ErrorKind {
    /// Its name on the wire and in `swarm run` output (`malformed`, `too_large`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::Encrypted => "encrypted",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timeout",
            ErrorKind::AgentCrashed => "agent_crashed",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Io => "io",
        }
    }

    /// Every kind.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Malformed,
        ErrorKind::Encrypted,
        ErrorKind::Unsupported,
        ErrorKind::Timeout,
        ErrorKind::AgentCrashed,
        ErrorKind::TooLarge,
        ErrorKind::Io,
    ];

    /// The kind of this name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A PDF error leaves an agent as a task error of the same kind, and comes back as one
/// ([`PdfError::from_task_error`]).
impl From<PdfError> for crate::runtime::task::TaskError {
    fn from(e: PdfError) -> Self {
        Self::new(e.kind.name(), e.message)
    }
}

impl ErrorKind {
    /// The kind of a failed task's error: itself when it is a PDF error kind; anything
    /// else (a handler's own kind, `bad_input`) reads as `malformed`.
    pub fn of_task_error(e: &crate::runtime::task::TaskError) -> Self {
        Self::from_name(&e.kind).unwrap_or(Self::Malformed)
    }
}

impl PdfError {
    /// The PDF error a failed task carried, its kind as [`ErrorKind::of_task_error`] reads it.
    pub fn from_task_error(e: &crate::runtime::task::TaskError) -> Self {
        Self::new(ErrorKind::of_task_error(e), e.message.clone())
    }

    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::task::TaskError;

    #[test]
    fn a_pdf_error_kind_survives_the_trip_as_a_task_error() {
        for kind in ErrorKind::ALL {
            // The wire name is the name `swarm run` prints.
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.name())
            );
            let sent = TaskError::from(PdfError::new(kind, "m"));
            let back = PdfError::from_task_error(&TaskError::decode(&sent.encode()));
            assert_eq!(back, PdfError::new(kind, "m"));
        }
        let other = PdfError::from_task_error(&TaskError::new("bad_input", "x"));
        assert_eq!(other.kind, ErrorKind::Malformed);
    }
}
