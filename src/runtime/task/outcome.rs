//! How tasks end: outcomes, failures, and the causes of agents' deaths.

use super::{Held, TaskError, TaskKind};
use std::fmt;
use std::time::Duration;

/// Why an agent died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "cause", content = "detail")]
pub enum DeathCause {
    /// It exited with this code.
    Exit(i32),
    /// A signal killed it (not the OOM killer, not the supervisor).
    Signal(i32),
    /// The OOM killer, as counted by its cgroup.
    Oom,
    /// Its heartbeat went stale; the supervisor killed it.
    Hang,
    /// A task overran its timeout; the supervisor killed it.
    Timeout,
    /// The supervisor killed it for breaking the protocol (bad handles or counters).
    Protocol,
    /// The supervisor stopped it (shutdown).
    Supervisor,
    /// Its sandbox killed it (`SIGSYS`): it made a system call the filter forbids (see
    /// [`crate::runtime::sandbox::seccomp`]).
    Sandbox,
}

impl DeathCause {
    /// Whether a death with this cause is the fault of the task that was running: crash
    /// signals, OOM, hang, timeout, a sandbox kill, a broken protocol (only an agent can
    /// write its side of its rings and its heartbeat, so an agent that breaks them while it
    /// runs a task was most likely turned by that task's input), and an exit (agents exit
    /// on their own only when told to, so one that exits while it reports a task running
    /// was ended by that task: a `process::exit` in a handler, a panic the agent could not
    /// catch). A plain `SIGKILL` from outside or a shutdown are not.
    pub fn blames_task(self) -> bool {
        match self {
            DeathCause::Signal(sig) => [
                libc::SIGSEGV,
                libc::SIGBUS,
                libc::SIGILL,
                libc::SIGFPE,
                libc::SIGABRT,
                libc::SIGSYS,
                libc::SIGTRAP,
            ]
            .contains(&sig),
            DeathCause::Oom
            | DeathCause::Hang
            | DeathCause::Timeout
            | DeathCause::Exit(_)
            | DeathCause::Sandbox
            | DeathCause::Protocol => true,
            DeathCause::Supervisor => false,
        }
    }

    /// The bucket `deaths` counts it under: `signal`, `oom`, `hang`, `exit`, `timeout`,
    /// `protocol`, `supervisor`, `sandbox`.
    pub fn bucket(self) -> &'static str {
        match self {
            DeathCause::Exit(_) => "exit",
            DeathCause::Signal(_) => "signal",
            DeathCause::Oom => "oom",
            DeathCause::Hang => "hang",
            DeathCause::Timeout => "timeout",
            DeathCause::Protocol => "protocol",
            DeathCause::Supervisor => "supervisor",
            DeathCause::Sandbox => "sandbox",
        }
    }
}

impl fmt::Display for DeathCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeathCause::Exit(c) => write!(f, "exited with code {c}"),
            DeathCause::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by {name}")
            }
            DeathCause::Oom => write!(f, "killed by the OOM killer (memory limit)"),
            DeathCause::Hang => write!(f, "hung (heartbeat stale)"),
            DeathCause::Timeout => write!(f, "task timed out"),
            DeathCause::Protocol => write!(f, "broke the shared-memory protocol"),
            DeathCause::Supervisor => write!(f, "stopped by the supervisor"),
            DeathCause::Sandbox => write!(f, "killed by its sandbox (a forbidden system call)"),
        }
    }
}

/// How a task ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The agent finished it.
    Completed {
        /// The output bytes (empty when the output is held).
        output: Vec<u8>,
        /// The output, kept by the supervisor, when the task asked for that
        /// ([`super::Output::Hold`]).
        held: Option<Held>,
        /// Run time as the agent measured it.
        run_time: Duration,
        /// The agent slot that ran it.
        slot: u32,
        /// Attempts it took (1 = first try).
        attempts: u32,
    },
    /// It will not complete.
    Failed(Failure),
}

impl Outcome {
    /// Whether it completed.
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed { .. })
    }
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// Its own execution killed an agent this many times: not retried again.
    #[error("quarantined after killing its agent {} times: {}", .0.len(), join(.0))]
    Quarantined(Vec<DeathCause>),
    /// The handler returned an error.
    #[error("task failed: {0}")]
    Task(TaskError),
    /// The handler panicked; the agent caught it and lives on. Not retried: the same input
    /// would panic again. (An agent that *dies* while running a task, a panic under
    /// `panic = "abort"` included, blames the task, which is quarantined after
    /// `quarantine_after` deaths.)
    #[error("task panicked: {0}")]
    Panicked(String),
    /// No agent knows the kind.
    #[error("no handler for task kind {0}")]
    UnknownKind(TaskKind),
    /// The supervisor shut down (or stopped on a fatal error) before the task ran.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A typed task's output did not decode as its `Output` type.
    #[error("output does not decode: {0}")]
    BadOutput(String),
    /// Agents died under it this many times without the deaths being its fault (or with
    /// too few of them blamed on it to quarantine it): given up rather than retried for
    /// ever (see `SupervisorBuilder::max_attempts`). An agent that hides what it runs
    /// and dies each time ends here.
    #[error("given up after {deaths} agent deaths while it ran (the last: {last})")]
    Abandoned {
        /// Deaths of agents that held it.
        deaths: u32,
        /// The last one's cause.
        last: DeathCause,
    },
    /// A task it depends on (in a graph) failed, so it did not run. The dependency's
    /// own outcome says why.
    #[error("not run: its dependency, task {dependency}, failed")]
    Dependency {
        /// The dependency that failed (the nearest one, when failures cascade).
        dependency: super::TaskId,
    },
}

fn join(causes: &[DeathCause]) -> String {
    causes
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
