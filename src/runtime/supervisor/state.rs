//! The supervisor's state: its agents as it sees them, its tasks, and what the threads
//! share. Behaviour lives in the files beside it, each on one concern.

use super::config::SupervisorBuilder;
use super::reaper::{Reaper, Waker};
use super::snapshot::Counters;
use super::stored::Stored;
use crate::runtime::cgroup::{AgentCgroup, CgroupManager};
use crate::runtime::task::{DeathCause, Outcome, Output, ReleaseHeld};
use crate::shm::descriptor::Descriptor;
use crate::shm::heartbeat::{HeartbeatWord, Observer};
use crate::shm::ring::{Consumer, Producer};
use crate::shm::segment::{Segment, SegmentRing, SegmentSlab};
use crate::shm::slab::Slab;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// One incarnation's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Phase {
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
    /// A slot of an elastic pool with no agent, until the queue calls for one.
    Parked,
    /// Being retired (it was idle): its exit parks the slot instead of respawning it.
    Retiring,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    pub(super) id: u64,
    pub(super) attempt: u32,
}

pub(super) struct Agent {
    pub(super) slot: u32,
    pub(super) epoch: u32,
    pub(super) child: Option<crate::runtime::launch::Launched>,
    pub(super) pid: u32,
    pub(super) cgroup: Option<AgentCgroup>,
    pub(super) tx: Option<Producer<Descriptor, SegmentRing>>,
    pub(super) rx: Option<Consumer<Descriptor, SegmentRing>>,
    pub(super) observer: Observer,
    pub(super) phase: Phase,
    pub(super) in_flight: VecDeque<InFlight>,
    pub(super) kill_reason: Option<DeathCause>,
    /// Since when it has had nothing to do (an elastic pool retires it after a while).
    pub(super) idle_since: Option<Instant>,
    /// Started by the pool growing, not as a restart.
    pub(super) scaled: bool,
    /// The task the agent reports running and when we first saw it.
    pub(super) current: Option<(u64, Instant)>,
    pub(super) consecutive_failures: u32,
    pub(super) restarts: u64,
    pub(super) completed: u64,
    /// The task kinds its class takes; `None` takes all.
    pub(super) kinds: Option<Arc<[u32]>>,
    /// Its class's cgroup limits, if not the supervisor's.
    pub(super) limits: Option<crate::runtime::cgroup::Limits>,
    /// Whether the agent reports waiting for room in the slab.
    pub(super) waiting_for_room: Option<RoomWait>,
    /// Its last progress report ([`crate::runtime::bus::PROGRESS_TOPIC`]).
    pub(super) progress: Option<crate::runtime::bus::Progress>,
}

/// An agent's wait for room in the slab, as the supervisor watches it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoomWait {
    /// When it was first seen waiting.
    pub(super) since: Instant,
    /// Whether the wait has been reported.
    pub(super) reported: bool,
}

impl Phase {
    /// Whether the slot has an agent, or is getting one (not parked, retiring or stopped).
    pub(super) fn is_running(self) -> bool {
        !matches!(self, Phase::Parked | Phase::Stopped | Phase::Retiring)
    }
}

impl Agent {
    /// Whether it runs a suspect, which runs alone: nothing joins it.
    pub(super) fn runs_suspect(&self, tasks: &HashMap<u64, TaskRecord>) -> bool {
        self.in_flight.len() == 1
            && self
                .in_flight
                .front()
                .and_then(|f| tasks.get(&f.id))
                .is_some_and(|t| t.suspect)
    }

    pub(super) fn takes(&self, kind: u32) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }

    /// The task the agent's heartbeat line says it is running, if that is one of the
    /// attempts the supervisor gave it (the line is the agent's, so it is checked).
    pub(super) fn reported_task(&self, hb: &HeartbeatWord) -> Option<u64> {
        let (id, attempt) = hb.current()?;
        self.in_flight
            .iter()
            .any(|f| f.id == id && f.attempt == attempt)
            .then_some(id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// To its [`TaskHandle`].
    Handle,
    /// To [`Supervisor::recv`].
    Stream,
    /// To the [`TaskSet`] of this id.
    Set(u64),
    /// To nobody: a subtask of a split, whose output goes to its merge step only.
    Internal,
}

pub(super) struct TaskRecord {
    pub(super) kind: u32,
    pub(super) arg: u64,
    /// Input bytes ([`Input::Bytes`]), written into the slab at the first dispatch.
    pub(super) payload: Vec<u8>,
    pub(super) output: Output,
    pub(super) timeout: Option<Duration>,
    pub(super) attempt: u32,
    pub(super) blame: Vec<DeathCause>,
    /// Its agent died without a culprit it could be sure of, with it among several tasks:
    /// it runs alone from now on, so that the next death, if any, is plainly its own.
    pub(super) suspect: bool,
    pub(super) delivery: Delivery,
    /// The payload chain lent to agents: its length and its buffers, in order.
    pub(super) lent: Option<(u64, Vec<crate::shm::slab::PageHandle>)>,
    /// Held outputs taken over as inputs, in order. An output on the edges of a graph is
    /// shared by the tasks that take it, and freed by the last of them to end
    /// ([`State::release_input`]).
    pub(super) inputs: Vec<Arc<Stored>>,
    /// Its place in the pending order, kept for when its dependencies are done.
    pub(super) key: i64,
    /// The dependencies it still waits on, if it is a graph node that waits.
    pub(super) waiting: Option<Box<Waiting>>,
    /// The tasks that take its output as an input: (task, input position).
    pub(super) dependents: Vec<(u64, usize)>,
    /// When it was submitted, in ns since the supervisor started.
    pub(super) submitted_ns: u64,
    /// When its last attempt was dispatched, in ns since the supervisor started.
    pub(super) dispatched_ns: u64,
    /// Its spread group ([`crate::runtime::task::TaskSpec::spread`]).
    pub(super) spread: Option<u64>,
    /// Levels of splits above it (0 for a task as submitted).
    pub(super) depth: u32,
    /// The task first submitted that it comes from by splits (`None`: itself).
    pub(super) root: Option<u64>,
    /// A graph source let in by flow control: counted running until it ends.
    pub(super) source: bool,
    /// The one shared-cache key it may use ([`crate::runtime::task::TaskSpec::cache_key`]).
    pub(super) cache_key: Option<Vec<u8>>,
    /// Bytes of edge outputs among its inputs, counted by flow control until it ends.
    pub(super) staged: u64,
}

impl TaskRecord {
    /// A task's record at submission.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        kind: u32,
        arg: u64,
        payload: Vec<u8>,
        output: Output,
        timeout: Option<Duration>,
        delivery: Delivery,
        inputs: Vec<Arc<Stored>>,
        key: i64,
    ) -> Self {
        Self {
            kind,
            arg,
            payload,
            output,
            timeout,
            attempt: 1,
            blame: Vec::new(),
            suspect: false,
            delivery,
            lent: None,
            inputs,
            key,
            waiting: None,
            dependents: Vec::new(),
            submitted_ns: 0,
            dispatched_ns: 0,
            spread: None,
            depth: 0,
            root: None,
            source: false,
            cache_key: None,
            staged: 0,
        }
    }
}

/// A graph node's wait for its dependencies.
#[derive(Debug)]
pub(super) struct Waiting {
    /// Its inputs so far, by position: each dependency's output once it completed.
    pub(super) slots: Vec<Option<Arc<Stored>>>,
    /// Dependencies not yet ended.
    pub(super) left: usize,
    /// Whether a failed dependency leaves an empty input instead of failing it.
    pub(super) tolerate_failed: bool,
    /// The subtasks of a split that feed it: cancelled, if still waiting for an agent,
    /// when it ends first.
    pub(super) feeders: Vec<u64>,
}

/// When a task of a set (or graph) was submitted, last dispatched and ended, in ns since
/// the supervisor started ([`Supervisor::clock_ns`](super::Supervisor::clock_ns)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Its submission.
    pub submitted_ns: u64,
    /// Its last attempt's dispatch (0 if it never ran).
    pub dispatched_ns: u64,
    /// Its end.
    pub ended_ns: u64,
}

pub(super) struct State {
    pub(super) agents: Vec<Agent>,
    pub(super) tasks: HashMap<u64, TaskRecord>,
    pub(super) pending: super::pending::Pending,
    /// When the supervisor started: submission times (for priorities) count from here.
    pub(super) started: Instant,
    pub(super) results: HashMap<u64, Outcome>,
    pub(super) stream: VecDeque<(u64, Outcome)>,
    pub(super) next_id: u64,
    pub(super) slab: Slab<SegmentSlab>,
    pub(super) lent_buffers: usize,
    pub(super) counters: Counters,
    pub(super) startup_failures: VecDeque<Instant>,
    pub(super) fatal: Option<String>,
    pub(super) stopping: bool,
    pub(super) cgroups: Option<CgroupManager>,
    pub(super) last_health: Instant,
    /// When the ledger was last swept of stray words ([`State::sweep_ledger`]).
    pub(super) last_sweep: Instant,
    pub(super) rng: u64,
    pub(super) scratch: Vec<Descriptor>,
    /// Reused by `dispatch` for the agents' order.
    pub(super) order: Vec<usize>,
    /// Outputs kept for the caller, by token.
    pub(super) held: HashMap<u64, Stored>,
    pub(super) next_held: u64,
    /// The scheduling strategy, when it is not least-loaded's batch path.
    pub(super) strategy: Option<Box<dyn super::strategy::Strategy>>,
    /// Subtasks still allowed below each task that has split (by the task first
    /// submitted), see [`crate::runtime::task::MAX_SPLIT_TASKS`].
    pub(super) split_budget: HashMap<u64, usize>,
    /// Graph sources waiting for flow control to let them in, in the pending order
    /// ([`super::flow`]); those running, and the bytes on edges to runnable nodes.
    pub(super) sources: std::collections::BTreeSet<(i64, u64)>,
    pub(super) sources_running: usize,
    pub(super) edge_bytes: u64,
    /// The bus's topics, which the supervisor alone writes (also in [`Shared::bus`]).
    pub(super) bus: Arc<Mutex<super::bus::Topics>>,
    /// The shared state's writer (also in [`Shared::store`]).
    pub(super) store: Arc<Mutex<super::shared_state::Store>>,
    /// The shared cache's keys and values.
    pub(super) cache: super::cache::Cache,
    /// The segment (also in [`Shared::seg`]), for agents' reply lines.
    pub(super) seg: Arc<Segment>,
    /// When an elastic pool last grew (it does not shrink within its idle timeout of it).
    pub(super) last_scale_up: Option<Instant>,
    /// Spread groups with open tasks: the slots that have had one, and how many are open.
    pub(super) spread: HashMap<u64, (HashSet<u32>, usize)>,
    /// Results of task sets (and graphs), by set.
    pub(super) sets: HashMap<u64, VecDeque<(u64, Outcome, Timing)>>,
    pub(super) next_set: u64,
    /// Tasks whose handle was dropped before they ended: their outcomes are discarded.
    pub(super) abandoned: HashSet<u64>,
    /// Open tasks whose outcome goes to [`Supervisor::recv`].
    pub(super) open_stream: usize,
    /// What a [`Held`] calls to free itself: the supervisor, weakly.
    pub(super) owner: Weak<dyn ReleaseHeld>,
    /// Warnings for the caller ([`Status::warnings`]), each once.
    pub(super) warnings: Vec<String>,
    /// The keys of the warnings given.
    pub(super) warned: std::collections::HashSet<String>,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// The bus's topics: publishing takes this lock alone, never the state's.
    pub(super) bus: Arc<Mutex<super::bus::Topics>>,
    /// The shared state's writer: the supervisor's writes take this lock alone.
    pub(super) store: Arc<Mutex<super::shared_state::Store>>,
    /// The shared state, read in place.
    pub(super) state_reader: crate::shm::kv::KvReader<crate::shm::segment::SegmentKv>,
    pub(super) cv: Condvar,
    pub(super) seg: Arc<Segment>,
    pub(super) cfg: SupervisorBuilder,
    pub(super) agent_bin: PathBuf,
    /// The task kinds the agent executable serves, as it answered the probe.
    pub(super) served: Vec<u32>,
    /// How each sandbox measure stood in the probe (what agents run with).
    pub(super) sandbox: crate::runtime::sandbox::SandboxReport,
    /// What each agent is started with: the measures that held, required.
    pub(super) agent_sandbox: crate::runtime::sandbox::SandboxPolicy,
    /// Callers driving right now; while nonzero the reactor does not sleep on the doorbell.
    pub(super) drivers: AtomicUsize,
    /// Held by whoever sleeps on the doorbell (the reactor, or a waiting caller): its
    /// sleep flag is for one sleeper.
    pub(super) doorbell_owner: Mutex<()>,
    pub(super) stop: AtomicBool,
    pub(super) waker: Waker,
    pub(super) exits: crossbeam_channel::Receiver<(u32, u32)>,
    pub(super) reaper: Reaper,
    /// Read end of the liveness pipe agents inherit; the write end below never leaves us.
    pub(super) parent_read: OwnedFd,
    pub(super) _parent_write: OwnedFd,
}
