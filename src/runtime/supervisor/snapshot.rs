//! Snapshots of the supervisor: agents, queues and counters.

use super::state::{Phase, State};
use super::stored::Stored;
use super::Supervisor;
use crate::runtime::task::TaskKind;
use crate::shm::heartbeat::AgentState;
use crate::shm::slab::Owner;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Counters reported by [`Supervisor::status`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    /// Tasks completed.
    pub completed: u64,
    /// Tasks failed (quarantined, handler errors, cancelled).
    pub failed: u64,
    /// Agents started to replace dead ones.
    pub agent_restarts: u64,
    /// Tasks that split themselves into subtasks and a merge step.
    pub tasks_split: u64,
    /// Agents an elastic pool started as it grew.
    pub agents_added: u64,
    /// Agents an elastic pool retired, idle.
    pub agents_retired: u64,
    /// Task attempts requeued after an agent died.
    pub tasks_retried: u64,
    /// Completions discarded as stale or unknown.
    pub stale_completions: u64,
    /// Deaths by cause bucket (`signal`, `oom`, `hang`, `exit`, `timeout`, ...).
    pub deaths: BTreeMap<&'static str, u64>,
    /// Times an agent was seen waiting for room in the page-buffer slab to write an
    /// output (backpressure from held outputs and lent payloads).
    pub slab_waits: u64,
    /// Bus messages published (the supervisor's own and those agents handed it).
    pub bus_published: u64,
    /// Agents' bus messages refused (a topic they may not publish on, a progress report
    /// for a task they do not have, a large message past the bus's room).
    pub bus_refused: u64,
    /// Writes the shared state took (the supervisor's and agents').
    pub state_writes: u64,
    /// Agents' requests of the shared state refused (too large, the table full, not a
    /// request).
    pub state_refused: u64,
    /// Shared-cache asks answered with a value (at once, or once computed elsewhere).
    pub cache_hits: u64,
    /// Shared-cache asks that found nothing (the asker computed it).
    pub cache_misses: u64,
    /// Shared-cache values evicted.
    pub cache_evictions: u64,
    /// Keys whose computer went (died, gave up) handed to a waiter.
    pub cache_handed_over: u64,
    /// Shared-cache asks refused: a key the task was not given, or a task its agent does
    /// not have.
    pub cache_refused: u64,
    /// Tasks ended, and how long their last attempts ran, by task kind.
    pub by_kind: BTreeMap<u32, KindCounters>,
}

/// The upper bounds, in seconds, of the run-time histogram's buckets
/// ([`KindCounters::run_time_buckets`]); a last bucket takes the longer runs.
pub const RUN_TIME_BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// [`RUN_TIME_BOUNDS`] in nanoseconds, as the supervisor compares them.
const RUN_TIME_BOUNDS_NS: [u64; 14] = {
    let mut ns = [0u64; 14];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = (RUN_TIME_BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    ns
};

/// One task kind's ended tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KindCounters {
    /// Completed.
    pub completed: u64,
    /// Failed (quarantined, handler errors, cancelled, unknown kind).
    pub failed: u64,
    /// Run times of the last attempt of tasks that ran (from dispatch to the end), by
    /// bucket: `run_time_buckets[i]` counts those of at most `RUN_TIME_BOUNDS[i]` seconds
    /// and more than the bound before; the last counts the longer ones. Not cumulative.
    pub run_time_buckets: [u64; RUN_TIME_BOUNDS.len() + 1],
    /// The sum of those run times, in nanoseconds.
    pub run_time_sum_ns: u64,
}

impl KindCounters {
    /// Counts a task that ended, which ran for `ran_ns` if it was dispatched.
    pub(super) fn ended(&mut self, completed: bool, ran_ns: Option<u64>) {
        if completed {
            self.completed += 1;
        } else {
            self.failed += 1;
        }
        if let Some(ns) = ran_ns {
            let b = RUN_TIME_BOUNDS_NS.partition_point(|&bound| bound < ns);
            self.run_time_buckets[b] += 1;
            self.run_time_sum_ns = self.run_time_sum_ns.saturating_add(ns);
        }
    }

    /// Tasks that ran, as the histogram counts them.
    pub fn runs(&self) -> u64 {
        self.run_time_buckets.iter().sum()
    }
}

/// The task an agent runs, as its heartbeat line says and the supervisor checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CurrentTask {
    /// The task.
    pub id: u64,
    /// Its kind.
    pub kind: u32,
    /// How long since the supervisor first saw the agent report it, in milliseconds.
    pub running_ms: u64,
}

/// The isolation in force for agents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Isolation {
    /// Per-agent cgroups: `v1`, `v2`, or `None` when agents run without them.
    pub cgroups: Option<&'static str>,
    /// Running agents that have no cgroup although the others do (their cgroup could not
    /// be made; see the warnings).
    pub agents_without_cgroup: usize,
    /// Each sandbox measure and how it stands in every agent (see
    /// [`crate::runtime::sandbox`]): agents are started with the measures that are `on`
    /// and do not run without them.
    pub sandbox: crate::runtime::sandbox::SandboxReport,
}

/// One agent as [`Supervisor::status`] reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentStatus {
    /// Slot.
    pub slot: u32,
    /// Incarnation.
    pub epoch: u32,
    /// Process id (0 when not running).
    pub pid: u32,
    /// `starting`, `ready`, `backoff`, `dead` or `stopped`.
    pub phase: &'static str,
    /// Tasks on its ring or running.
    pub in_flight: usize,
    /// Tasks it completed (this slot, all incarnations).
    pub completed: u64,
    /// Times this slot was respawned.
    pub restarts: u64,
    /// Its cgroup directories.
    pub cgroup: Vec<PathBuf>,
    /// What the agent itself reports (`idle`, `busy`, `waiting_for_room`, ...);
    /// informational, never trusted for decisions.
    pub reported: &'static str,
    /// The task kinds it serves (its class's, among those the agent executable registers):
    /// a task goes only to an agent that serves its kind.
    pub serves: Vec<TaskKind>,
    /// Its last progress report ([`crate::runtime::bus::PROGRESS_TOPIC`]) for a task it
    /// still has.
    pub progress: Option<crate::runtime::bus::Progress>,
    /// Milliseconds since its heartbeat word was last seen to change (since its spawn if
    /// never): an agent's age of silence, which the hang timeout bounds.
    pub heartbeat_age_ms: u64,
    /// The task it runs now, if it reports one of those it was given.
    pub current_task: Option<CurrentTask>,
}

/// A snapshot of the supervisor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Per-agent state.
    pub agents: Vec<AgentStatus>,
    /// Tasks waiting for an agent.
    pub pending: usize,
    /// Tasks on agents.
    pub in_flight: usize,
    /// Counters.
    pub counters: Counters,
    /// The isolation in force.
    pub isolation: Isolation,
    /// Everything the supervisor had to warn about (each once), such as an isolation it
    /// could not set up. Also logged through `tracing`, but an embedder without a
    /// subscriber finds them here.
    pub warnings: Vec<String>,
    /// The task kinds the agent executable serves (it said so when probed at build).
    pub kinds: Vec<TaskKind>,
    /// Page buffers of the supervisor's pool free now.
    pub slab_free: usize,
    /// Bytes of small held outputs kept in the supervisor's memory instead of the slab.
    pub held_inline_bytes: usize,
    /// Page buffers in the supervisor's pool (each agent has a pool of its own for its
    /// outputs, [`SupervisorBuilder::agent_buffers`](super::SupervisorBuilder::agent_buffers)).
    pub slab_buffers: usize,
    /// Why the supervisor stopped, if it did.
    pub fatal: Option<String>,
}

impl Supervisor {
    /// A snapshot of agents, queues and counters.
    pub fn status(&self) -> Status {
        let st = self.shared.state.lock();
        let now = std::time::Instant::now();
        Status {
            agents: st
                .agents
                .iter()
                .map(|a| AgentStatus {
                    slot: a.slot,
                    epoch: a.epoch,
                    pid: a.pid,
                    phase: match a.phase {
                        Phase::Starting(_) => "starting",
                        Phase::Ready => "ready",
                        Phase::Backoff(_) => "backoff",
                        Phase::Dead => "dead",
                        Phase::Stopped => "stopped",
                        Phase::Parked => "parked",
                        Phase::Retiring => "retiring",
                    },
                    in_flight: a.in_flight.len(),
                    completed: a.completed,
                    restarts: a.restarts,
                    cgroup: a
                        .cgroup
                        .as_ref()
                        .map(|g| g.dirs().to_vec())
                        .unwrap_or_default(),
                    reported: match self
                        .shared
                        .seg
                        .heartbeat(a.slot)
                        .ok()
                        .and_then(|h| h.state())
                    {
                        _ if a.child.is_none() => "none",
                        Some(AgentState::Empty) | None => "none",
                        Some(AgentState::Starting) => "starting",
                        Some(AgentState::Idle) => "idle",
                        Some(AgentState::Busy) => "busy",
                        Some(AgentState::Exiting) => "exiting",
                        Some(AgentState::WaitingForRoom) => "waiting_for_room",
                    },
                    serves: self
                        .shared
                        .served
                        .iter()
                        .filter(|&&k| a.takes(k))
                        .map(|&k| TaskKind(k))
                        .collect(),
                    progress: a
                        .progress
                        .filter(|p| a.in_flight.iter().any(|f| f.id == p.task)),
                    heartbeat_age_ms: a.observer.silent_for(now).as_millis() as u64,
                    current_task: a.current.and_then(|(id, since)| {
                        Some(CurrentTask {
                            id,
                            kind: st.tasks.get(&id)?.kind,
                            running_ms: now.saturating_duration_since(since).as_millis() as u64,
                        })
                    }),
                })
                .collect(),
            pending: st.pending.len(),
            in_flight: st.agents.iter().map(|a| a.in_flight.len()).sum(),
            counters: st.counters(),
            isolation: Isolation {
                cgroups: st.cgroups.as_ref().map(|c| c.hierarchy().name()),
                agents_without_cgroup: if st.cgroups.is_some() {
                    st.agents
                        .iter()
                        .filter(|a| a.child.is_some() && a.cgroup.is_none())
                        .count()
                } else {
                    0
                },
                sandbox: self.shared.sandbox.clone(),
            },
            held_inline_bytes: st
                .held
                .values()
                .map(|h| match h {
                    Stored::Inline(b) => b.len(),
                    Stored::Chain { .. } => 0,
                })
                .sum(),
            warnings: st.warnings.clone(),
            kinds: self.shared.served.iter().map(|&k| TaskKind(k)).collect(),
            slab_free: st.slab.free_in(Owner::Supervisor),
            slab_buffers: st.slab.capacity(Owner::Supervisor) as usize,
            fatal: st.fatal.clone(),
        }
    }
}

/// The most warnings [`Status::warnings`] keeps; later ones go to `tracing` only.
const MAX_WARNINGS: usize = 64;

impl State {
    /// The counters, with those the bus, the shared state and the cache keep.
    pub(super) fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        let bus = self.bus.lock();
        (c.bus_published, c.bus_refused) = (bus.published, bus.refused);
        let store = self.store.lock();
        (c.state_writes, c.state_refused) = (store.writes, store.refused);
        let k = self.cache.counts;
        (c.cache_hits, c.cache_misses) = (k.hits, k.misses);
        (c.cache_evictions, c.cache_handed_over) = (k.evictions, k.handed_over);
        c.cache_refused = k.refused;
        c
    }

    /// Records a warning for [`Status::warnings`], once per `key` (a slot's cgroup, say,
    /// not each of its incarnations').
    pub(super) fn warn(&mut self, key: String, msg: String) {
        if self.warnings.len() < MAX_WARNINGS && self.warned.insert(key) {
            self.warnings.push(msg);
        }
    }
}
