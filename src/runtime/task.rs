//! Tasks as the supervisor and agents see them: kinds, specs, completion statuses, outcomes,
//! and the parsing of `KIND[:ARG]` strings (`spin:10ms`, `alloc:64M`).

use std::fmt;
use std::time::Duration;

/// Task kinds understood by every agent. Kinds from 1000 up are free for embedders.
pub mod kinds {
    /// Do nothing.
    pub const NOOP: u32 = 1;
    /// Busy the CPU for `arg` nanoseconds.
    pub const SPIN: u32 = 2;
    /// Sleep `arg` nanoseconds.
    pub const SLEEP: u32 = 3;
    /// Return the payload with every byte XOR [`crate::runtime::task::ECHO_XOR`].
    pub const ECHO: u32 = 4;
    /// Allocate and touch `arg` bytes, then free them.
    pub const ALLOC: u32 = 5;
    /// Abort the agent.
    pub const CRASH: u32 = 6;
    /// Hang the whole agent process (it stops itself with `SIGSTOP`): what a deadlocked or
    /// frozen process looks like to the supervisor.
    pub const HANG: u32 = 7;
    /// Return the inputs of a several-input task, concatenated in order (for tests of
    /// held outputs fanned in).
    pub const CONCAT: u32 = 8;
    /// Panic in the handler with the message `synthetic panic`.
    pub const PANIC: u32 = 9;
    /// Busy the CPU for `arg` nanoseconds without ever beating: ordinary CPU-bound code.
    pub const BUSY: u32 = 10;
    /// The first kind free for embedders; kinds below it are the crate's own.
    pub const FIRST_USER: u32 = 1000;
    /// Not a task: asks the agent to exit once it reaches this descriptor.
    pub const STOP: u32 = u32::MAX;
}

/// What `echo` XORs into each byte.
pub const ECHO_XOR: u8 = 0xA5;

/// Completion statuses (a completion descriptor's `kind` field).
pub mod status {
    /// Done; the payload is the output.
    pub const OK: u32 = 0;
    /// The handler failed; the payload is the message.
    pub const FAILED: u32 = 1;
    /// The agent has no handler for the kind.
    pub const UNKNOWN_KIND: u32 = 2;
    /// The handler panicked; the payload is the panic's message and location.
    pub const PANICKED: u32 = 3;
}

/// Descriptor flags (a task descriptor's `flags` field).
pub mod flags {
    /// The payload is a list of inputs, not the input: `(first buffer, length)` pairs of
    /// native-endian `u64`, each naming a chain the supervisor holds and lends.
    pub const INPUT_LIST: u32 = 1;
    /// The output will be held in the slab for a later task, and the task does not drain
    /// a pipeline (see [`super::TaskSpec::drains`]): it must leave the slab's reserve, the
    /// last eighth of its buffers, free.
    pub const KEEP_RESERVE: u32 = 2;

    /// In an [`INPUT_LIST`], the first word of a pair whose input is not a chain: its
    /// `length` bytes follow the pair, padded to a multiple of 8. Small held outputs live
    /// in the supervisor's memory, not in a whole page buffer each, and travel this way.
    pub const INLINE_INPUT: u64 = u64::MAX - 1;
}

/// A task to submit: a kind, its argument, an optional payload and timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// The kind (see [`kinds`]).
    pub kind: u32,
    /// The kind's argument.
    pub arg: u64,
    /// Input bytes, lent to the agent through the page-buffer slab.
    pub payload: Vec<u8>,
    /// Longest the task may run on an agent before the agent is killed and the task blamed.
    pub timeout: Option<Duration>,
    /// Earlier tasks' outputs, kept in the slab ([`TaskSpec::keep_output`]), handed to this
    /// task as its input without copying: one becomes the input as it is; several reach
    /// the agent as a list (see [`crate::runtime::agent::TaskContext::inputs`]). The supervisor takes
    /// them over at submit and frees them when this task ends. Used instead of `payload`.
    pub inputs: Vec<Held>,
    /// Keep the output in the slab and complete with a [`Held`] instead of copying it out:
    /// for outputs that are the next stage's input.
    pub keep_output: bool,
    /// The task turns held inputs into a smaller output, and its end frees them: its output
    /// may take the slab's reserve, which other held outputs (`keep_output`) leave free.
    /// When stages that grow their data (a parser, an extractor) have filled the slab, the
    /// stages that shrink it can still finish, and their ends make room for the rest.
    /// Outputs copied out (not `keep_output`) may always take the reserve: the supervisor
    /// frees them as it takes them.
    pub drains: bool,
}

/// An output kept in the page-buffer slab by the supervisor: pass it on as another task's
/// input ([`TaskSpec::inputs`]), read it ([`crate::runtime::supervisor::Supervisor::take_held`]) or
/// free it ([`crate::runtime::supervisor::Supervisor::release_held`]). A plain token: the
/// supervisor checks it against its own table, so a stale or forged one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Held {
    pub(crate) id: u64,
    pub(crate) len: u64,
}

impl Held {
    /// Length of the held bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl TaskSpec {
    /// A task with no payload.
    pub fn new(kind: u32, arg: u64) -> Self {
        Self {
            kind,
            arg,
            payload: Vec::new(),
            timeout: None,
            inputs: Vec::new(),
            keep_output: false,
            drains: false,
        }
    }

    /// An `echo` task carrying `len` bytes of a pattern derived from `seed`.
    pub fn echo(len: usize, seed: u64) -> Self {
        let payload = (0..len)
            .map(|i| (seed.wrapping_mul(0x9E37_79B9).wrapping_add(i as u64 * 13) >> 3) as u8)
            .collect();
        Self {
            payload,
            ..Self::new(kinds::ECHO, 0)
        }
    }

    /// The same task with a timeout.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// The time the kind is expected to spend running, when the kind says (for overhead
    /// accounting).
    pub fn nominal_run_time(&self) -> Duration {
        match self.kind {
            kinds::SPIN | kinds::SLEEP | kinds::BUSY => Duration::from_nanos(self.arg),
            _ => Duration::ZERO,
        }
    }
}

/// A `KIND[:ARG]` string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad task {0:?}: {1}")]
pub struct ParseTaskError(pub String, pub String);

impl std::str::FromStr for TaskSpec {
    type Err = ParseTaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: String| ParseTaskError(s.to_string(), m);
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let need = |what: &str| {
            if arg.is_empty() {
                Err(err(format!("{name} needs :{what}")))
            } else {
                Ok(())
            }
        };
        Ok(match name {
            "noop" => TaskSpec::new(kinds::NOOP, 0),
            "crash" => TaskSpec::new(kinds::CRASH, 0),
            "hang" => TaskSpec::new(kinds::HANG, 0),
            "panic" => TaskSpec::new(kinds::PANIC, 0),
            "spin" | "sleep" | "busy" => {
                need("DURATION")?;
                let d = parse_duration(arg).map_err(err)?;
                let kind = match name {
                    "spin" => kinds::SPIN,
                    "busy" => kinds::BUSY,
                    _ => kinds::SLEEP,
                };
                TaskSpec::new(kind, d.as_nanos().min(u64::MAX as u128) as u64)
            }
            "echo" => {
                need("BYTES")?;
                TaskSpec::echo(parse_size(arg).map_err(err)? as usize, 0)
            }
            "alloc" => {
                need("SIZE")?;
                TaskSpec::new(kinds::ALLOC, parse_size(arg).map_err(err)?)
            }
            _ => return Err(err(
                "unknown kind (noop, spin:D, busy:D, sleep:D, echo:N, alloc:N, crash, hang, panic)"
                    .into(),
            )),
        })
    }
}

/// Splits `"1.5G"` into `(1.5, "G")`.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit))
}

/// Parses `250ms`, `1.5s`, `20us`, `100ns`, `2m`; a bare number is milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (v, unit) = number_and_unit(s).ok_or_else(|| format!("bad duration {s:?}"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1e-3,
        "s" => 1.0,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        u => return Err(format!("bad duration unit {u:?}")),
    };
    let secs = v * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `4096`, `64K`, `64M`, `1G`, `512MiB`, `1.5G` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (v, unit) = number_and_unit(s).ok_or_else(|| format!("bad size {s:?}"))?;
    let unit = unit.trim().trim_end_matches("iB").trim_end_matches('B');
    let scale: f64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("bad size unit {u:?}")),
    };
    let bytes = v * scale;
    if !bytes.is_finite() || !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(bytes as u64)
}

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
}

impl DeathCause {
    /// Whether a death with this cause is the fault of the task that was running: crash
    /// signals, OOM, hang, timeout, and an exit (agents exit on their own only when told
    /// to, so one that exits while it reports a task running was ended by that task: a
    /// `process::exit` in a handler, a panic the agent could not catch). A plain `SIGKILL`
    /// from outside, a protocol error or a shutdown are not.
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
            DeathCause::Oom | DeathCause::Hang | DeathCause::Timeout | DeathCause::Exit(_) => true,
            DeathCause::Protocol | DeathCause::Supervisor => false,
        }
    }

    /// The bucket `deaths` counts it under: `signal`, `oom`, `hang`, `exit`, `timeout`,
    /// `protocol`, `supervisor`.
    pub fn bucket(self) -> &'static str {
        match self {
            DeathCause::Exit(_) => "exit",
            DeathCause::Signal(_) => "signal",
            DeathCause::Oom => "oom",
            DeathCause::Hang => "hang",
            DeathCause::Timeout => "timeout",
            DeathCause::Protocol => "protocol",
            DeathCause::Supervisor => "supervisor",
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
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The agent finished it.
    Completed {
        /// The output bytes (empty when the output is held).
        output: Vec<u8>,
        /// The output, kept in the slab, when the task asked for that
        /// ([`TaskSpec::keep_output`]).
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
    UnknownKind(u32),
    /// The supervisor shut down (or stopped on a fatal error) before the task ran.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A typed task's output did not decode as its `Output` type.
    #[error("output does not decode: {0}")]
    BadOutput(String),
}

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

fn join(causes: &[DeathCause]) -> String {
    causes
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!("noop".parse::<TaskSpec>().unwrap().kind, kinds::NOOP);
        let s: TaskSpec = "spin:10ms".parse().unwrap();
        assert_eq!((s.kind, s.arg), (kinds::SPIN, 10_000_000));
        assert_eq!("sleep:1.5s".parse::<TaskSpec>().unwrap().arg, 1_500_000_000);
        assert_eq!("alloc:64M".parse::<TaskSpec>().unwrap().arg, 64 << 20);
        assert_eq!("echo:4K".parse::<TaskSpec>().unwrap().payload.len(), 4096);
        assert!("spin".parse::<TaskSpec>().is_err());
        assert_eq!("busy:2s".parse::<TaskSpec>().unwrap().kind, kinds::BUSY);
        assert_eq!("panic".parse::<TaskSpec>().unwrap().kind, kinds::PANIC);
        assert!("bogus:1".parse::<TaskSpec>().is_err());
        assert!("sleep:5parsecs".parse::<TaskSpec>().is_err());
    }

    #[test]
    fn task_errors_cross_as_they_are_and_junk_is_contained() {
        let e = TaskError::new("not_found", "no such file");
        assert_eq!(TaskError::decode(&e.encode()), e);
        // A kind that may not cross is sent as `error`, the message kept.
        let odd = TaskError::new("Bad Kind!", "m");
        assert_eq!(
            TaskError::decode(&odd.encode()),
            TaskError::new("error", "m")
        );
        for junk in [&b""[..], b"\xff", b"\x05ab", b"\x02A!rest"] {
            let d = TaskError::decode(junk);
            assert_eq!(d.kind, "error");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_duration("200us").unwrap(), Duration::from_micros(200));
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn blame() {
        assert!(DeathCause::Signal(libc::SIGABRT).blames_task());
        assert!(!DeathCause::Signal(libc::SIGKILL).blames_task());
        assert!(DeathCause::Oom.blames_task());
        assert!(DeathCause::Exit(101).blames_task());
        assert!(!DeathCause::Protocol.blames_task());
    }
}
