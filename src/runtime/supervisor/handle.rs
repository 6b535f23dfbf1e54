//! A submitted task's handle.

use super::state::Shared;
use crate::runtime::task::{Outcome, TaskId};
use std::sync::Arc;
use std::time::Duration;

/// A submitted task whose result can be awaited or polled.
pub struct TaskHandle {
    pub(super) id: u64,
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle").field("id", &self.id).finish()
    }
}

impl TaskHandle {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        TaskId(self.id)
    }

    /// The outcome, if the task has ended (taking it: a handle yields its outcome once).
    pub fn try_result(&self) -> Option<Outcome> {
        let mut st = self.shared.state.lock();
        st.drive(&self.shared);
        st.results.remove(&self.id)
    }

    /// Waits for the outcome (taking it); `None` on timeout. Every task ends with an
    /// outcome, even when the supervisor stops (then [`Failure::Cancelled`](crate::runtime::task::Failure::Cancelled)).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        self.shared
            .wait_for(timeout, |st| st.results.remove(&self.id))
    }
}

impl Drop for TaskHandle {
    /// A handle dropped before its task ended lets the outcome go when it comes: nothing
    /// piles up for handles nobody waits on.
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        let unclaimed = st.results.remove(&self.id);
        if unclaimed.is_none() && st.tasks.contains_key(&self.id) {
            st.abandoned.insert(self.id);
        }
        drop(st);
        // Dropped unlocked: an outcome's held output frees itself through the lock.
        drop(unclaimed);
    }
}
