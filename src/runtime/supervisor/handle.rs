//! A submitted task's handle.

use super::*;

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
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The outcome, if the task has ended (taking it).
    pub fn try_result(&self) -> Option<Outcome> {
        let mut st = self.shared.state.lock();
        st.drive(&self.shared);
        st.results.remove(&self.id)
    }

    /// Waits for the outcome; `None` on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        self.shared
            .wait_for(timeout, |st| st.results.remove(&self.id))
    }
}
