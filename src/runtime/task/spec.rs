//! What a caller submits: a task's spec, its input and what becomes of its output, and
//! the held outputs that pass from task to task.

use super::{kinds, TaskKind};
use std::sync::Weak;
use std::time::Duration;

/// What a task takes as its input. Exclusive by construction: bytes or held outputs.
#[derive(Debug, Default)]
pub enum Input {
    /// No input.
    #[default]
    None,
    /// Bytes, lent to the agent through the page-buffer slab (at most half the slab).
    Bytes(Vec<u8>),
    /// Earlier tasks' outputs kept by the supervisor ([`Output::Hold`]), handed to this
    /// task without a copy: one becomes the input as it is; several reach the agent as a
    /// list ([`crate::runtime::agent::TaskContext::inputs`]), in this order. The supervisor
    /// takes them over at submit and frees them when this task ends.
    Held(Vec<Held>),
}

/// What becomes of a task's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Output {
    /// Copied out to the caller ([`super::Outcome::Completed`]'s `output`); its buffers
    /// are freed at once.
    #[default]
    Return,
    /// Kept by the supervisor, and the task completes with a [`Held`]: for an output that
    /// is the next stage's input. The supervisor copies it out of the agent's pool into its
    /// own (or, past half of its pool, its own memory), so the agent can no longer change
    /// it and never waits for a later stage to make room.
    Hold,
}

impl Output {
    /// Whether the output is kept.
    pub fn is_held(self) -> bool {
        !matches!(self, Output::Return)
    }
}

/// A task to submit: a kind, its argument, its input, what becomes of its output, and a
/// run-time limit.
#[derive(Debug)]
pub struct TaskSpec {
    /// The kind (see [`kinds`]).
    pub kind: TaskKind,
    /// The kind's argument.
    pub arg: u64,
    /// The input.
    pub input: Input,
    /// What becomes of the output.
    pub output: Output,
    /// Longest the task may run on an agent before the agent is killed and the task blamed
    /// as a `timeout` (else the supervisor's limit for its kind, if any).
    pub timeout: Option<Duration>,
    /// Higher runs first; equal ones in submission order (default 0). A waiting task ages:
    /// it is never passed by a task submitted more than the difference in priority times
    /// [`SupervisorBuilder::priority_aging`](crate::runtime::supervisor::SupervisorBuilder::priority_aging)
    /// after it.
    pub priority: i32,
    /// Tasks with the same key go to different agents, while there is an agent that has
    /// not had one of them (for scatter-gather and votes: the same input on k agents).
    pub spread: Option<SpreadKey>,
    /// The one shared-cache key the task may compute and ask for
    /// ([`crate::runtime::agent::Cache`]); `None`: any key. Declared by whoever submits
    /// the task, so that an agent taken over by a hostile input cannot plant a value
    /// under another task's key.
    pub cache_key: Option<Vec<u8>>,
}

/// Names a group of tasks to spread over different agents ([`TaskSpec::spread`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpreadKey(u64);

impl SpreadKey {
    /// A key no other group has.
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // Relaxed: only uniqueness matters.
        Self(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// Its number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Default for SpreadKey {
    fn default() -> Self {
        Self::new()
    }
}

/// Frees held outputs: the supervisor, as seen by a [`Held`].
pub(crate) trait ReleaseHeld: Send + Sync {
    /// Frees the held output `id`, if it is still held.
    fn release_held(&self, id: u64);
}

/// An output kept by the supervisor ([`Output::Hold`]): pass it on as another task's input
/// ([`Input::Held`]), read it ([`crate::runtime::supervisor::Supervisor::take_held`]), or
/// drop it, which frees it. Owned: there is one `Held` per kept output, and a forgotten one
/// does not leak its buffers.
pub struct Held {
    pub(crate) id: u64,
    pub(crate) len: u64,
    pub(crate) owner: Option<Weak<dyn ReleaseHeld>>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish()
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Held {}

impl Held {
    /// Length of the held bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether it was kept by the supervisor that `owner` names.
    pub(crate) fn is_of(&self, owner: &Weak<dyn ReleaseHeld>) -> bool {
        self.owner.as_ref().is_some_and(|o| o.ptr_eq(owner))
    }

    /// Gives up the right to free it on drop; the supervisor has taken it back.
    pub(crate) fn defuse(mut self) -> u64 {
        self.owner = None;
        self.id
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take().and_then(|w| w.upgrade()) {
            owner.release_held(self.id);
        }
    }
}

impl TaskSpec {
    /// A task with no input whose output is returned.
    pub fn new(kind: TaskKind, arg: u64) -> Self {
        Self {
            kind,
            arg,
            input: Input::None,
            output: Output::Return,
            timeout: None,
            priority: 0,
            spread: None,
            cache_key: None,
        }
    }

    /// An `echo` task carrying `len` bytes of a pattern derived from `seed`.
    pub fn echo(len: usize, seed: u64) -> Self {
        Self::new(kinds::ECHO, 0).with_bytes(echo_pattern(len, seed))
    }

    /// The same task with `bytes` as its input.
    pub fn with_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.input = Input::Bytes(bytes);
        self
    }

    /// The same task with held outputs as its inputs.
    pub fn with_held(mut self, inputs: Vec<Held>) -> Self {
        self.input = Input::Held(inputs);
        self
    }

    /// The same task with its output kept or returned.
    pub fn with_output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// The same task with a timeout.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// The same task, allowed the one shared-cache key `key` ([`TaskSpec::cache_key`]).
    pub fn with_cache_key(mut self, key: Vec<u8>) -> Self {
        self.cache_key = Some(key);
        self
    }

    /// The same task in a spread group (see [`TaskSpec::spread`]).
    pub fn spread_by(mut self, key: SpreadKey) -> Self {
        self.spread = Some(key);
        self
    }

    /// The same task with a priority (higher first; see [`TaskSpec::priority`]).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Its input bytes, if its input is bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.input {
            Input::Bytes(b) => b,
            _ => &[],
        }
    }

    /// The time the kind is expected to spend running, when the kind says (for overhead
    /// accounting).
    pub fn nominal_run_time(&self) -> Duration {
        match self.kind {
            kinds::SPIN | kinds::SLEEP | kinds::BUSY => Duration::from_nanos(self.arg),
            _ => Duration::ZERO,
        }
    }

    /// A copy for another submission, when its input is not held outputs (which have one
    /// owner each): `None` for a task with held inputs.
    pub fn try_clone(&self) -> Option<TaskSpec> {
        let input = match &self.input {
            Input::None => Input::None,
            Input::Bytes(b) => Input::Bytes(b.clone()),
            Input::Held(h) if h.is_empty() => Input::None,
            Input::Held(_) => return None,
        };
        Some(TaskSpec {
            kind: self.kind,
            arg: self.arg,
            input,
            output: self.output,
            timeout: self.timeout,
            priority: self.priority,
            spread: self.spread,
            cache_key: self.cache_key.clone(),
        })
    }
}

/// The bytes [`TaskSpec::echo`] carries.
pub fn echo_pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(0x9E37_79B9).wrapping_add(i as u64 * 13) >> 3) as u8)
        .collect()
}
