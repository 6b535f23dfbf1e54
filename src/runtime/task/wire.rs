//! What crosses the ring between supervisor and agents: task kinds and ids, completion
//! statuses, descriptor flags.

use std::fmt;

/// A task kind: which handler of an agent's registry runs the task. Kinds below
/// [`kinds::FIRST_USER`] are the crate's own (the synthetic kinds, the PDF kinds).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct TaskKind(pub u32);

impl TaskKind {
    /// The number on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A submitted task's id, unique within its supervisor.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl TaskId {
    /// The number on the wire.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Task kinds understood by every agent. Kinds from 1000 up are free for embedders.
pub mod kinds {
    use super::TaskKind;

    /// Do nothing.
    pub const NOOP: TaskKind = TaskKind(1);
    /// Busy the CPU for `arg` nanoseconds.
    pub const SPIN: TaskKind = TaskKind(2);
    /// Sleep `arg` nanoseconds.
    pub const SLEEP: TaskKind = TaskKind(3);
    /// Return the payload with every byte XOR [`crate::runtime::task::ECHO_XOR`].
    pub const ECHO: TaskKind = TaskKind(4);
    /// Allocate and touch `arg` bytes, then free them.
    pub const ALLOC: TaskKind = TaskKind(5);
    /// Abort the agent.
    pub const CRASH: TaskKind = TaskKind(6);
    /// Hang the whole agent process (it stops itself with `SIGSTOP`): what a deadlocked or
    /// frozen process looks like to the supervisor.
    pub const HANG: TaskKind = TaskKind(7);
    /// Return the inputs of a several-input task, concatenated in order (for tests of
    /// held outputs fanned in).
    pub const CONCAT: TaskKind = TaskKind(8);
    /// Panic in the handler with the message `synthetic panic`.
    pub const PANIC: TaskKind = TaskKind(9);
    /// Busy the CPU for `arg` nanoseconds without ever beating: ordinary CPU-bound code.
    pub const BUSY: TaskKind = TaskKind(10);
    /// Publish on the bus: the input is a topic name, a newline, then a message; `arg`
    /// copies of it go out, each followed by the agent's pid (4 bytes) and its index (8
    /// bytes), little-endian.
    pub const PUBLISH: TaskKind = TaskKind(11);
    /// Listen on the bus: the input is a [`crate::runtime::bus::Listen`] (JSON); the output
    /// is what it heard, a [`crate::runtime::bus::Heard`] (JSON).
    pub const LISTEN: TaskKind = TaskKind(12);
    /// Report progress `arg` times, 2 ms apart.
    pub const PROGRESS: TaskKind = TaskKind(13);
    /// Write the shared state: the input is a [`crate::runtime::probes::StateWrite`]
    /// (JSON), the output a [`crate::runtime::probes::Wrote`].
    pub const STATE_WRITE: TaskKind = TaskKind(14);
    /// Watch the shared state: the input is a [`crate::runtime::probes::StateWatch`]
    /// (JSON), the output a [`crate::runtime::probes::Watched`].
    pub const STATE_WATCH: TaskKind = TaskKind(15);
    /// Get a value through the shared cache: the input is a
    /// [`crate::runtime::probes::Cached`] (JSON); the output is the value's length and
    /// where it came from, a [`crate::runtime::probes::Got`] (JSON).
    pub const CACHED: TaskKind = TaskKind(16);
    /// The first kind free for embedders; kinds below it are the crate's own.
    pub const FIRST_USER: TaskKind = TaskKind(1000);
    /// Not a task: asks the agent to exit once it reaches this descriptor.
    pub const STOP: TaskKind = TaskKind(u32::MAX);
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
    /// The handler split the task; the payload is its subtasks and merge step
    /// ([`super::super::Split`]).
    pub const SPLIT: u32 = 4;
    /// Not a completion: a message the agent asks the supervisor to publish on the bus,
    /// topic in `arg` (see [`crate::runtime::bus`]); the payload is the message, or with
    /// [`super::flags::INLINE_MESSAGE`] its `arg2` bytes are in `buffer` and `len`.
    pub const PUBLISH: u32 = 5;
    /// Not a completion: a request of the shared state, its op in `arg2` (see
    /// [`crate::runtime::supervisor::state_op`]), its number in `arg`, the request in the
    /// payload.
    pub const STATE: u32 = 6;
}

/// Descriptor flags (a task descriptor's `flags` field).
pub mod flags {
    /// The payload is a list of inputs, not the input: `(first buffer, length)` pairs of
    /// native-endian `u64`, each naming a chain the supervisor holds and lends, or an
    /// inline input ([`INLINE_INPUT`]).
    pub const INPUT_LIST: u32 = 1;
    /// The input is one held output (not bytes given with the task): the handler sees it in
    /// its inputs too, so that a handler of several inputs reads one the same way.
    pub const ONE_INPUT: u32 = 2;
    /// In an [`INPUT_LIST`], the first word of a pair whose input is not a chain: its
    /// `length` bytes follow the pair, padded to a multiple of 8. Small held outputs live
    /// in the supervisor's memory, not in a whole page buffer each, and travel this way.
    pub const INLINE_INPUT: u64 = u64::MAX - 1;
    /// On a [`super::status::PUBLISH`] descriptor: the message (at most 16 bytes, its
    /// length in `arg2`) is in the `buffer` and `len` words, little-endian, not in page
    /// buffers.
    pub const INLINE_MESSAGE: u32 = 4;
}
