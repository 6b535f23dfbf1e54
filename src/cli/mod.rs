//! The `swarm` command line's policy: what each subcommand does with its flags, what it
//! prints, and which exit status it ends with. The binary (`src/bin/swarm.rs`) only
//! parses the arguments into these modules' flag types, makes one call, and maps the
//! result to an exit code.
//!
//! Exit status, for every subcommand:
//!
//! | status | meaning                                                               |
//! |--------|-----------------------------------------------------------------------|
//! | 0      | done; for `swarm run`, every document ok                              |
//! | 1      | a fatal error (the swarm could not start, output could not be written)|
//! | 2      | bad usage: a bad flag, no input, a path that does not exist, no PDF   |
//! | 3      | `swarm run` finished, but some documents failed                       |
//!
//! ```no_run
//! use neuralflow_swarm::cli;
//! let done = cli::extract::run(&["a.pdf".into()]);
//! std::process::exit(match done {
//!     Ok(d) => d.exit_code(),
//!     Err(e) => e.exit_code(),
//! }
//! .into());
//! ```

pub mod args;
pub mod bench;
pub mod demo;
pub mod extract;
mod progress;
pub mod run;
pub mod serve;
pub mod status;
pub mod submit;
pub mod top;
pub mod worker;

/// Tunes the C allocator for a process that moves large buffers through it: every reply
/// (a quarter of a megabyte for 16 pages) and every line is allocated, filled and freed.
/// glibc would map each above its threshold afresh and give freed memory at the heap's
/// top back to the kernel, so that each buffer's pages fault in and are zeroed again;
/// the supervisor spent a tenth of its CPU on that. Allocations up to 32 MiB now come
/// from the heap, and up to 256 MiB free at its top stay with the process.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; called before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// What kind of failure ended a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The command was asked for something it cannot do: exit status 2.
    Usage,
    /// It could not do what it was asked: exit status 1.
    Fatal,
}

/// A failed command, with the line to print on stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// Bad usage, saying what was wrong.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Usage,
            message: message.into(),
        }
    }

    /// A fatal error, saying what failed.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Fatal,
            message: message.into(),
        }
    }

    /// A fatal error from the library, as `swarm: ERROR`.
    pub(crate) fn from_library(e: impl std::fmt::Display) -> Self {
        Self::fatal(format!("swarm: {e}"))
    }

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The exit status it ends the command with.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Usage => 2,
            ErrorKind::Fatal => 1,
        }
    }
}

/// How a command that ran to its end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Everything asked for was done: exit status 0.
    Ok,
    /// `swarm run` finished, but some documents failed: exit status 3.
    SomeDocumentsFailed,
}

impl Done {
    /// The exit status.
    pub fn exit_code(self) -> u8 {
        match self {
            Done::Ok => 0,
            Done::SomeDocumentsFailed => 3,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: a timestamp, the level, the target, the message and its fields.
    #[default]
    Text,
    /// For machines: one JSON object a line (`timestamp`, `level`, `target`, `fields`
    /// with `message` and the event's own fields).
    Json,
}

/// Logs go to stderr, filtered by `RUST_LOG`: by default our warnings and errors, and
/// nothing from lopdf (a malformed file is reported in the output, not as log noise).
pub fn init_logging(format: LogFormat) {
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lopdf=off")),
        );
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().with_ansi(false).init(),
    }
}
