//! The supervisor: starts agent processes in their own cgroups, feeds them tasks through
//! the segment's rings, watches them (waitpid through pidfds, heartbeats), and recovers from
//! their deaths without losing or doubling a task.
//!
//! # Threads
//!
//! - The **caller's** threads submit tasks and wait for results. A caller that waits drives
//!   the supervisor itself for a short while (pops completions, dispatches), which keeps the
//!   round trip of a task free of thread wake-ups.
//! - The **reactor** thread drives when no caller does: it sleeps on the segment's doorbell
//!   futex, which agents ring after publishing completions, with a timeout that paces the
//!   health checks (hangs, task timeouts, backoffs).
//! - The **reaper** thread blocks in `poll` on one pidfd per agent; when one becomes
//!   readable the agent has exited, and the reaper wakes the reactor, which reaps it with
//!   `waitpid` and recovers. Exits are seen within a millisecond or two.
//!
//! All state is behind one lock; the rings themselves are lock-free.
//!
//! # Recovery
//!
//! When an agent dies: its cause is decided (the supervisor's own kill reason; else the OOM
//! counter of its cgroup; else the signal or exit code); completions it published are taken;
//! the buffers the ledger records against it are reclaimed; the task it was running is
//! blamed if the cause is the task's fault ([`DeathCause::blames_task`]), and quarantined
//! after `quarantine_after` such deaths; every other in-flight task is requeued at the front
//! with its attempt raised (so a late result of the old attempt is discarded); a replacement
//! starts. An agent that dies before ever becoming ready, for a reason other than a plain
//! `SIGKILL`, counts toward the crash-loop intensity: such slots back off exponentially with
//! jitter, and past `intensity` of them within `period` the supervisor stops with
//! [`Error::CrashLoop`].
//!
//! # Files
//!
//! `config` (the builder and its policies), `error`, `state` (what the threads share),
//! `stored` (where a held output's bytes are), `reaper` (the pidfd thread and the waker),
//! `probe` (the agent executable checked at build), `process` (an incarnation's command
//! and spawning), `lifecycle` (start and stop), `dispatch` (submit, the dispatch rule,
//! descriptors and lent payloads), `completion` (completions checked and delivered),
//! `held` (held outputs for the caller), `reactor` (driving: the reactor thread and
//! waiting callers), `recovery` (health, deaths, blame, quarantine, crash loops),
//! `snapshot` (status), `handle` and `typed` (task handles, typed tasks, task sets).
//!
//! ```no_run
//! use neuralflow_swarm::supervisor::Supervisor;
//! use neuralflow_swarm::task::TaskSpec;
//! use std::time::Duration;
//!
//! let sup = Supervisor::builder().agents(4).build()?;
//! let handle = sup.submit("sleep:10ms".parse()?)?;
//! let outcome = handle.wait(Some(Duration::from_secs(5))).expect("done in time");
//! assert!(outcome.is_completed());
//! sup.shutdown(neuralflow_swarm::supervisor::Shutdown::Drain)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bus;
mod cache;
mod completion;
mod config;
mod dispatch;
mod error;
mod flow;
mod graph;
mod handle;
mod held;
mod lifecycle;
mod pending;
mod probe;
mod process;
mod reactor;
mod reaper;
mod recovery;
mod shared_state;
mod snapshot;
mod state;
mod stored;
mod strategy;
mod typed;

pub use bus::Subscription;
pub use cache::CacheLimits;
pub use config::{AgentClass, CgroupMode, RestartPolicy, Shutdown, SupervisorBuilder};
pub use error::{Error, RecvError};
pub use flow::GraphFlow;
pub use graph::{GraphNode, GraphRun, NodeEnd};
pub use handle::TaskHandle;
pub use probe::ProbeError;
pub use shared_state::{
    encode_request as encode_state_request, op as state_op, reply as state_reply, Consistency,
};
pub use snapshot::{
    AgentStatus, Counters, CurrentTask, Isolation, KindCounters, Status, RUN_TIME_BOUNDS,
};
pub use state::Timing;
pub use strategy::{Adaptive, Candidate, RoundRobin, Scheduling, Strategy};
pub use typed::{typed_spec, Joined, TaskResult, TaskSet, TypedHandle};

use crate::runtime::task::{DeathCause, Failure, Outcome, TaskId, TaskSpec};
use crate::shm::segment::Segment;
use state::{Delivery, Shared};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running supervisor. Dropping it cancels what is left and stops the agents.
pub struct Supervisor {
    shared: Arc<Shared>,
    reactor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("status", &self.status())
            .finish()
    }
}

impl Supervisor {
    /// A builder with the defaults.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder::default()
    }

    /// Submits a task; its result comes through the returned handle. Blocks while
    /// `max_pending` tasks are waiting for an agent (backpressure).
    pub fn submit(&self, spec: TaskSpec) -> Result<TaskHandle, Error> {
        let id = self.shared.submit(spec, Delivery::Handle)?;
        Ok(TaskHandle {
            id,
            shared: self.shared.clone(),
        })
    }

    /// Submits a task whose result comes through [`Supervisor::recv`]. Returns its id.
    pub fn submit_detached(&self, spec: TaskSpec) -> Result<TaskId, Error> {
        self.shared.submit(spec, Delivery::Stream).map(TaskId)
    }

    /// Cancels a task unless an agent has it already (running, or queued on its ring):
    /// one waiting for an agent, for its dependencies or for flow control ends now as
    /// [`Failure::Cancelled`], its dependents with it. Returns whether it was cancelled.
    /// Unlike [`Supervisor::cancel`] it never stops an agent.
    pub fn cancel_queued(&self, id: TaskId) -> bool {
        let id = id.get();
        let mut st = self.shared.state.lock();
        let given = st
            .agents
            .iter()
            .any(|a| a.in_flight.iter().any(|f| f.id == id));
        if given || !st.tasks.contains_key(&id) {
            return false;
        }
        st.pending.remove(id);
        st.finish(
            id,
            Outcome::Failed(Failure::Cancelled("cancelled by the caller".into())),
        );
        true
    }

    /// Cancels a task: it ends now as [`Failure::Cancelled`] and is not retried. A task
    /// waiting for an agent is dropped; one an agent is running is stopped by killing that
    /// agent (it is replaced, and the rest of its queue goes to other agents without
    /// blame); one still queued behind others is skipped by its agent when it comes to it
    /// (the control topic tells it), or run and its result discarded if the agent missed
    /// that. Returns whether the task was still open.
    pub fn cancel(&self, id: TaskId) -> bool {
        let id = id.get();
        let mut st = self.shared.state.lock();
        if !st.tasks.contains_key(&id) {
            return false;
        }
        if st.pending.remove(id) {
        } else if let Some(i) = st
            .agents
            .iter()
            .position(|a| a.in_flight.front().is_some_and(|f| f.id == id))
        {
            st.kill(i, DeathCause::Supervisor);
        } else if st
            .agents
            .iter()
            .any(|a| a.in_flight.iter().any(|f| f.id == id))
        {
            // Queued behind others on an agent: it skips it when it comes to it.
            st.tell_agents(crate::runtime::bus::Control::Cancel(TaskId(id)));
        }
        st.finish(
            id,
            Outcome::Failed(Failure::Cancelled("cancelled by the caller".into())),
        );
        true
    }

    /// The next result of a detached task ([`Supervisor::submit_detached`]), in
    /// completion order. Says why when there is none: the timeout passed while detached
    /// tasks are still open, none is open, or the supervisor has stopped (its open tasks
    /// were all delivered, cancelled).
    pub fn recv(&self, timeout: Option<Duration>) -> Result<(TaskId, Outcome), RecvError> {
        self.shared
            .wait_for(timeout, |st| match st.stream.pop_front() {
                Some((id, o)) => Some(Ok((TaskId(id), o))),
                None if st.open_stream == 0 => Some(Err(if st.fatal.is_some() || st.stopping {
                    RecvError::Stopped
                } else {
                    RecvError::Empty
                })),
                None => None,
            })
            .unwrap_or(Err(RecvError::Timeout))
    }

    /// The shared segment (for monitoring and tests).
    pub fn segment(&self) -> &Arc<Segment> {
        &self.shared.seg
    }

    /// Stops the supervisor: drains or cancels the tasks, stops the agents, removes the
    /// cgroups. Returns the final counters, or the fatal error that stopped it earlier.
    pub fn shutdown(mut self, mode: Shutdown) -> Result<Counters, Error> {
        self.stop(mode)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.reactor.is_some() {
            let _ = self.stop(Shutdown::Cancel);
        }
    }
}
