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

mod completion;
mod config;
mod dispatch;
mod error;
mod handle;
mod held;
mod lifecycle;
mod probe;
mod process;
mod reactor;
mod recovery;
mod snapshot;
mod typed;

pub use config::{AgentClass, CgroupMode, RestartPolicy, Shutdown, SupervisorBuilder};
pub use error::{Error, RecvError};
pub use handle::TaskHandle;
pub use probe::ProbeError;
pub use snapshot::{AgentStatus, Counters, Isolation, Status};
pub use typed::{typed_spec, Joined, TaskResult, TaskSet, TypedHandle};

use held::Stored;
use process::Reaper;
use reactor::{reactor_loop, Waker};

use crate::runtime::agent::AgentConfig;
use crate::runtime::cgroup::{self, AgentCgroup, CgroupManager, Hierarchy, Limits};
use crate::runtime::task::{
    flags, status, DeathCause, Failure, Held, Input, Outcome, Output, ReleaseHeld, TaskError,
    TaskId, TaskKind, TaskSpec,
};
use crate::shm::descriptor::Descriptor;
use crate::shm::heartbeat::{AgentState, Liveness, Observer};
use crate::shm::ring::{Consumer, Producer};
use crate::shm::segment::{Direction, Segment, SegmentConfig, SegmentRing, SegmentSlab};
use crate::shm::slab::{Owner, PageHandle, Slab};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One incarnation's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Spawned, not yet announced ready.
    Starting(Instant),
    /// Taking tasks.
    Ready,
    /// Waiting before a respawn.
    Backoff(Instant),
    /// Not running; respawn at the next chance.
    Dead,
    /// Stopped for good (shutdown or fatal error).
    Stopped,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: u64,
    attempt: u32,
}

struct Agent {
    slot: u32,
    epoch: u32,
    child: Option<Child>,
    pid: u32,
    cgroup: Option<AgentCgroup>,
    tx: Option<Producer<Descriptor, SegmentRing>>,
    rx: Option<Consumer<Descriptor, SegmentRing>>,
    observer: Observer,
    phase: Phase,
    in_flight: VecDeque<InFlight>,
    kill_reason: Option<DeathCause>,
    /// The task the agent reports running and when we first saw it.
    current: Option<(u64, Instant)>,
    consecutive_failures: u32,
    restarts: u64,
    completed: u64,
    /// The task kinds its class takes; `None` takes all.
    kinds: Option<Arc<[u32]>>,
    /// Whether the agent reports waiting for room in the slab.
    waiting_for_room: Option<RoomWait>,
}

/// An agent's wait for room in the slab, as the supervisor watches it.
#[derive(Debug, Clone, Copy)]
struct RoomWait {
    /// When it was first seen waiting.
    since: Instant,
    /// When it was last seen waiting.
    last_seen: Instant,
    /// Whether the wait has been reported.
    reported: bool,
}

impl Agent {
    fn takes(&self, kind: u32) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// To its [`TaskHandle`].
    Handle,
    /// To [`Supervisor::recv`].
    Stream,
    /// To the [`TaskSet`] of this id.
    Set(u64),
}

struct TaskRecord {
    kind: u32,
    arg: u64,
    /// Input bytes ([`Input::Bytes`]), written into the slab at the first dispatch.
    payload: Vec<u8>,
    output: Output,
    timeout: Option<Duration>,
    attempt: u32,
    blame: Vec<DeathCause>,
    delivery: Delivery,
    /// The payload chain lent to agents: (raw handle, length, buffers).
    lent: Option<(u64, u64, usize)>,
    /// Held outputs taken over as inputs.
    inputs: Vec<Stored>,
}

struct State {
    agents: Vec<Agent>,
    tasks: HashMap<u64, TaskRecord>,
    pending: VecDeque<u64>,
    results: HashMap<u64, Outcome>,
    stream: VecDeque<(u64, Outcome)>,
    next_id: u64,
    slab: Slab<SegmentSlab>,
    lent_buffers: usize,
    counters: Counters,
    startup_failures: VecDeque<Instant>,
    fatal: Option<String>,
    stopping: bool,
    cgroups: Option<CgroupManager>,
    last_health: Instant,
    rng: u64,
    scratch: Vec<Descriptor>,
    /// Reused by `dispatch` for the agents' order.
    order: Vec<usize>,
    /// Outputs kept for the caller, by token.
    held: HashMap<u64, Stored>,
    next_held: u64,
    /// Results of task sets, by set.
    sets: HashMap<u64, VecDeque<(u64, Outcome)>>,
    next_set: u64,
    /// Tasks whose handle was dropped before they ended: their outcomes are discarded.
    abandoned: std::collections::HashSet<u64>,
    /// Open tasks whose outcome goes to [`Supervisor::recv`].
    open_stream: usize,
    /// What a [`Held`] calls to free itself: the supervisor, weakly.
    owner: std::sync::Weak<dyn ReleaseHeld>,
    /// Warnings for the caller ([`Status::warnings`]), each once.
    warnings: Vec<String>,
    /// The keys of the warnings given.
    warned: std::collections::HashSet<String>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    seg: Arc<Segment>,
    cfg: SupervisorBuilder,
    agent_bin: PathBuf,
    /// The task kinds the agent executable serves, as it answered the probe.
    served: Vec<u32>,
    /// Callers driving right now; while nonzero the reactor does not sleep on the doorbell.
    drivers: AtomicUsize,
    stop: AtomicBool,
    waker: Waker,
    exits: crossbeam_channel::Receiver<(u32, u32)>,
    reaper: Reaper,
    /// Read end of the liveness pipe agents inherit; the write end below never leaves us.
    parent_read: OwnedFd,
    _parent_write: OwnedFd,
}

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

    /// Cancels a task: it ends now as [`Failure::Cancelled`] and is not retried. A task
    /// waiting for an agent is dropped; one an agent is running is stopped by killing that
    /// agent (it is replaced, and the rest of its queue goes to other agents without
    /// blame); one still queued behind others runs, and its result is discarded. Returns
    /// whether the task was still open.
    pub fn cancel(&self, id: TaskId) -> bool {
        let id = id.get();
        let mut st = self.shared.state.lock();
        if !st.tasks.contains_key(&id) {
            return false;
        }
        if let Some(pos) = st.pending.iter().position(|&p| p == id) {
            st.pending.remove(pos);
        } else if let Some(i) = st
            .agents
            .iter()
            .position(|a| a.in_flight.front().is_some_and(|f| f.id == id))
        {
            st.kill(i, DeathCause::Supervisor);
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
