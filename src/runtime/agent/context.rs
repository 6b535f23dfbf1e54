//! What a task handler sees while it runs.

use crate::shm::heartbeat::HeartbeatWord;
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// What a task handler sees.
pub struct TaskContext<'a> {
    pub(super) hb: &'a HeartbeatWord,
    pub(super) input: &'a [u8],
    pub(super) inputs: &'a [Cow<'a, [u8]>],
    pub(super) arg: u64,
    pub(super) heartbeat_period: Duration,
}

impl TaskContext<'_> {
    /// One heartbeat. Handlers need not call it: a thread of the agent proves the process
    /// alive on its own (see [`super`]). It stays for handlers that want to, and costs a
    /// single store.
    #[inline]
    pub fn beat(&self) {
        self.hb.beat();
    }

    /// The task's input payload (empty for a task with several inputs).
    pub fn input(&self) -> &[u8] {
        self.input
    }

    /// The held inputs of a task ([`crate::runtime::task::Input::Held`], or a graph node's
    /// dependencies' outputs), in the order given, one or several; empty for a task given
    /// bytes or nothing.
    pub fn inputs(&self) -> &[Cow<'_, [u8]>] {
        self.inputs
    }

    /// The task's argument.
    pub fn arg(&self) -> u64 {
        self.arg
    }

    /// The agent's heartbeat period.
    pub fn heartbeat_period(&self) -> Duration {
        self.heartbeat_period
    }

    /// Sleeps for `d`.
    pub fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep(end - now);
        }
    }
}
