//! A handler's error, with a kind that crosses the process boundary.

use std::fmt;

/// A handler's error: a kind that programs can match on, and a message for people. It
/// crosses the process boundary as it is: the kind an agent's handler chose is the kind the
/// caller sees.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TaskError {
    /// A short `snake_case` code (`malformed`, `not_found`, ...). At most
    /// [`TaskError::MAX_KIND`] bytes of `[a-z0-9_.]`; anything else arrives as `error`.
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

impl TaskError {
    /// The longest kind that crosses the boundary.
    pub const MAX_KIND: usize = 64;

    /// An error of `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }

    fn valid_kind(k: &[u8]) -> bool {
        !k.is_empty()
            && k.len() <= Self::MAX_KIND
            && k.iter()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.'))
    }

    /// The bytes a failed completion carries: the kind's length (one byte), the kind, the
    /// message.
    pub fn encode(&self) -> Vec<u8> {
        let kind = if Self::valid_kind(self.kind.as_bytes()) {
            self.kind.as_bytes()
        } else {
            b"error"
        };
        let mut out = Vec::with_capacity(1 + kind.len() + self.message.len());
        out.push(kind.len() as u8);
        out.extend_from_slice(kind);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Reads what [`TaskError::encode`] wrote. An agent wrote it, so anything is accepted:
    /// a frame that does not check out becomes kind `error` with the bytes as its message.
    pub fn decode(bytes: &[u8]) -> Self {
        let n = bytes.first().map_or(0, |&n| n as usize);
        match bytes.get(1..1 + n) {
            Some(kind) if Self::valid_kind(kind) => Self {
                kind: String::from_utf8_lossy(kind).into_owned(),
                message: String::from_utf8_lossy(&bytes[1 + n..]).into_owned(),
            },
            _ => Self::new("error", String::from_utf8_lossy(bytes)),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        Self::new("error", message)
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> Self {
        Self::new("error", message)
    }
}
