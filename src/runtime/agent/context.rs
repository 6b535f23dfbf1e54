//! What a task handler sees while it runs.

use crate::runtime::task::{Split, SubTask, TaskKind};
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
    pub(super) split: std::cell::RefCell<Option<Split>>,
    pub(super) bus: &'a super::Bus<'a>,
}

impl<'a> TaskContext<'a> {
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

    /// The bus: publish, subscribe, read; report progress; ask whether the task was
    /// cancelled (see [`super::Bus`]).
    pub fn bus(&self) -> &super::Bus<'a> {
        self.bus
    }

    /// The shared state: read in place, written through the supervisor (see
    /// [`super::SharedState`]).
    pub fn state(&self) -> super::SharedState<'_> {
        super::SharedState { bus: self.bus }
    }

    /// The shared cache: `get_or_compute` across agents (see [`super::Cache`]).
    pub fn cache(&self) -> super::Cache<'_> {
        super::Cache {
            state: self.state(),
        }
    }

    /// The task's argument.
    pub fn arg(&self) -> u64 {
        self.arg
    }

    /// Splits the task instead of finishing it: the supervisor runs `subtasks` (each may
    /// split in turn, up to [`MAX_SPLIT_DEPTH`](crate::runtime::task::MAX_SPLIT_DEPTH)
    /// levels), then a task of `merge` with `merge_arg` whose inputs (`ctx.inputs()`) are
    /// their outputs in order; its outcome is this task's. Return what this returns:
    ///
    /// ```ignore
    /// if ctx.input().len() > 1024 {
    ///     let (a, b) = ctx.input().split_at(ctx.input().len() / 2);
    ///     let parts = vec![SubTask::new(SUM, 0, a.to_vec()), SubTask::new(SUM, 0, b.to_vec())];
    ///     return ctx.split(parts, ADD, 0);
    /// }
    /// ```
    pub fn split<E>(
        &self,
        subtasks: Vec<SubTask>,
        merge: TaskKind,
        merge_arg: u64,
    ) -> Result<Vec<u8>, E> {
        *self.split.borrow_mut() = Some(Split {
            subtasks,
            merge,
            merge_arg,
        });
        Ok(Vec::new())
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
