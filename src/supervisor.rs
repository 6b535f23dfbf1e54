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

use crate::agent::AgentConfig;
use crate::cgroup::{self, AgentCgroup, CgroupManager, Hierarchy, Limits};
use crate::descriptor::Descriptor;
use crate::heartbeat::{AgentState, Liveness, Observer};
use crate::ring::{Consumer, Producer};
use crate::segment::{Direction, Segment, SegmentConfig, SegmentRing, SegmentSlab};
use crate::slab::{Owner, PageHandle, Slab};
use crate::task::{flags, status, DeathCause, Failure, Held, Outcome, TaskSpec};
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

/// Whether agents must run in cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Use cgroups when the host allows; otherwise warn once and run unisolated.
    Auto,
    /// Fail to start without cgroups.
    Required,
    /// Never use cgroups.
    Off,
}

/// The crash-loop policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// First backoff after a startup failure.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Startup failures tolerated within `period` before the supervisor stops.
    pub intensity: u32,
    /// The window of `intensity`.
    pub period: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            intensity: 10,
            period: Duration::from_secs(10),
        }
    }
}

/// How to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Finish every submitted task first.
    Drain,
    /// Fail what has not finished with [`Failure::Cancelled`].
    Cancel,
}

/// Supervisor errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The segment could not be created.
    #[error(transparent)]
    Segment(#[from] crate::segment::SegmentError),
    /// Cgroups were required and are not available.
    #[error("cgroups required but unavailable: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
    /// A system call failed.
    #[error("{0}: {1}")]
    Os(&'static str, std::io::Error),
    /// Agents keep dying before becoming ready.
    #[error("crash loop: {0}")]
    CrashLoop(String),
    /// The supervisor is shutting down or has stopped.
    #[error("the supervisor has stopped")]
    Stopped,
    /// The page-buffer slab refused: no room, or a chain that does not check out.
    #[error(transparent)]
    Slab(#[from] crate::slab::SlabError),
    /// A [`Held`] output that the supervisor does not hold (already used or freed).
    #[error("no such held output")]
    UnknownHeld,
    /// A task no agent class accepts.
    #[error("no agent takes task kind {0}")]
    NoAgentForKind(u32),
    /// A task spec that contradicts itself.
    #[error("invalid task: {0}")]
    InvalidTask(&'static str),
}

/// A group of agents that take only some task kinds (specialists), or any (`kinds: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentClass {
    /// A name for status and logs (`parser`, `extractor`, ...).
    pub name: String,
    /// Agents in the class.
    pub count: u32,
    /// The task kinds they take; `None` takes every kind.
    pub kinds: Option<Vec<u32>>,
}

/// Configures and starts a [`Supervisor`].
#[derive(Debug, Clone)]
pub struct SupervisorBuilder {
    agents: u32,
    agent_bin: Option<PathBuf>,
    limits: Limits,
    cgroups: CgroupMode,
    hierarchy: Option<Hierarchy>,
    heartbeat_period: Duration,
    hang_timeout: Option<Duration>,
    startup_timeout: Duration,
    queue_depth: u32,
    max_pending: usize,
    quarantine_after: u32,
    restart: RestartPolicy,
    segment: SegmentConfig,
    agent_spin: u32,
    wait_spin: Duration,
    classes: Vec<AgentClass>,
}

impl Default for SupervisorBuilder {
    fn default() -> Self {
        Self {
            agents: 2,
            agent_bin: None,
            limits: Limits::default(),
            cgroups: CgroupMode::Auto,
            hierarchy: None,
            heartbeat_period: Duration::from_millis(100),
            hang_timeout: None,
            startup_timeout: Duration::from_secs(10),
            queue_depth: 16,
            max_pending: 1 << 16,
            quarantine_after: 3,
            restart: RestartPolicy::default(),
            segment: SegmentConfig {
                agent_slots: 2,
                ring_capacity: 1024,
                buffer_size: 64 * 1024,
                buffer_count: 1024,
            },
            agent_spin: 2000,
            wait_spin: Duration::from_micros(100),
            classes: Vec::new(),
        }
    }
}

impl SupervisorBuilder {
    /// Agents in classes that take only some task kinds (specialists). Replaces
    /// [`SupervisorBuilder::agents`]: the number of agents is the classes' total, in slot
    /// order. A task is dispatched only to agents whose class takes its kind.
    pub fn agent_classes(mut self, classes: Vec<AgentClass>) -> Self {
        self.agents = classes.iter().map(|c| c.count).sum::<u32>().max(1);
        self.classes = classes;
        self
    }

    /// Number of agents (default 2).
    pub fn agents(mut self, n: u32) -> Self {
        self.agents = n.max(1);
        self
    }
    /// The agent executable (default: `agent-bin` beside the running executable).
    pub fn agent_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent_bin = Some(path.into());
        self
    }
    /// Per-agent resource limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// Whether cgroups are used, required or not (default [`CgroupMode::Auto`]).
    pub fn cgroups(mut self, mode: CgroupMode) -> Self {
        self.cgroups = mode;
        self
    }
    /// [`CgroupMode::Required`] if `yes`, else [`CgroupMode::Auto`].
    pub fn require_cgroups(self, yes: bool) -> Self {
        self.cgroups(if yes {
            CgroupMode::Required
        } else {
            CgroupMode::Auto
        })
    }
    /// Use this cgroup hierarchy instead of detecting one.
    pub fn cgroup_hierarchy(mut self, h: Hierarchy) -> Self {
        self.hierarchy = Some(h);
        self
    }
    /// Idle heartbeat period of agents (default 100 ms).
    pub fn heartbeat_period(mut self, d: Duration) -> Self {
        self.heartbeat_period = d.max(Duration::from_millis(1));
        self
    }
    /// Silence after which an agent is hung (default 3 heartbeat periods).
    pub fn hang_timeout(mut self, d: Duration) -> Self {
        self.hang_timeout = Some(d);
        self
    }
    /// Tasks queued at most on one agent's ring (default 16).
    pub fn queue_depth(mut self, n: u32) -> Self {
        self.queue_depth = n.max(1);
        self
    }
    /// Tasks waiting for an agent before `submit` blocks (default 65,536).
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }
    /// Deaths a task may cause before it is quarantined (default 3).
    pub fn quarantine_after(mut self, k: u32) -> Self {
        self.quarantine_after = k.max(1);
        self
    }
    /// The crash-loop policy.
    pub fn restart_policy(mut self, p: RestartPolicy) -> Self {
        self.restart = p;
        self
    }
    /// Page buffers: size and count (default 64 KiB × 1024).
    pub fn buffers(mut self, size: u32, count: u32) -> Self {
        self.segment.buffer_size = size;
        self.segment.buffer_count = count;
        self
    }
    /// Descriptors per ring (default 1024).
    pub fn ring_capacity(mut self, n: u32) -> Self {
        self.segment.ring_capacity = n;
        self
    }
    /// Spins an idle agent makes before sleeping (default 2000).
    pub fn agent_spin(mut self, n: u32) -> Self {
        self.agent_spin = n;
        self
    }

    /// How long a caller waiting for a result ([`Supervisor::recv`], [`TaskHandle`])
    /// polls before it sleeps (default 100 µs). Polling answers microsecond tasks without
    /// a wake-up; for tasks that take milliseconds it only burns a core the agents
    /// could use, so give those `Duration::ZERO`.
    pub fn wait_spin(mut self, d: Duration) -> Self {
        self.wait_spin = d;
        self
    }

    /// Creates the segment and the cgroups, starts the agents and the supervisor threads.
    pub fn build(self) -> Result<Supervisor, Error> {
        Supervisor::start(self)
    }
}

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
}

impl Agent {
    fn takes(&self, kind: u32) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Handle,
    Stream,
}

struct TaskRecord {
    spec: TaskSpec,
    attempt: u32,
    blame: Vec<DeathCause>,
    delivery: Delivery,
    /// The payload chain lent to agents: (raw handle, length, buffers).
    lent: Option<(u64, u64, usize)>,
    /// Held outputs taken over as inputs: (raw handle, length, buffers).
    inputs: Vec<(u64, u64, usize)>,
}

/// Counters reported by [`Supervisor::status`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    /// Tasks completed.
    pub completed: u64,
    /// Tasks failed (quarantined, handler errors, cancelled).
    pub failed: u64,
    /// Agents started to replace dead ones.
    pub agent_restarts: u64,
    /// Task attempts requeued after an agent died.
    pub tasks_retried: u64,
    /// Completions discarded as stale or unknown.
    pub stale_completions: u64,
    /// Deaths by cause bucket (`signal`, `oom`, `hang`, `exit`, `timeout`, ...).
    pub deaths: BTreeMap<&'static str, u64>,
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
    /// Outputs kept in the slab for the caller: token → (raw handle, length, buffers).
    held: HashMap<u64, (u64, u64, usize)>,
    next_held: u64,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    seg: Arc<Segment>,
    cfg: SupervisorBuilder,
    agent_bin: PathBuf,
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

/// A submitted task whose result can be awaited or polled.
pub struct TaskHandle {
    id: u64,
    shared: Arc<Shared>,
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
    /// `v1`, `v2`, or `None` when running unisolated.
    pub cgroups: Option<&'static str>,
    /// Why the supervisor stopped, if it did.
    pub fatal: Option<String>,
}

impl Supervisor {
    /// A builder with the defaults.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder::default()
    }

    fn start(mut cfg: SupervisorBuilder) -> Result<Supervisor, Error> {
        cfg.segment.agent_slots = cfg.agents;
        let began = Instant::now();
        // The page buffers are reserved while the agents start (no buffer is lent before
        // `start` returns).
        let (seg, reservation) = Segment::create_deferred(cfg.segment)?;
        tracing::debug!(bytes = seg.layout().total_size, took = ?began.elapsed(), "segment created");
        let cgroups = match cfg.cgroups {
            CgroupMode::Off => None,
            mode => {
                let made = cfg
                    .hierarchy
                    .clone()
                    .or_else(Hierarchy::detect)
                    .ok_or(cgroup::CgroupError::NotFound)
                    .and_then(CgroupManager::create);
                match made {
                    Ok(m) => {
                        let swept = m.sweep_stale();
                        if !swept.is_empty() {
                            tracing::info!(?swept, "removed cgroups of dead supervisor runs");
                        }
                        Some(m)
                    }
                    Err(e) if mode == CgroupMode::Required => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!("running agents without cgroup isolation: {e}");
                        None
                    }
                }
            }
        };
        let (parent_read, parent_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::Os("pipe", e.into()))?;
        let (exit_tx, exits) = crossbeam_channel::unbounded();
        let waker = Waker {
            seg: seg.clone(),
            reactor: Arc::new(Mutex::new(None)),
        };
        let reaper = Reaper::start(exit_tx, waker.clone())?;
        let agent_bin = cfg
            .agent_bin
            .clone()
            .unwrap_or_else(crate::spawn::default_agent_bin);
        let now = Instant::now();
        let class_of: Vec<Option<Arc<[u32]>>> = cfg
            .classes
            .iter()
            .flat_map(|c| {
                let kinds: Option<Arc<[u32]>> = c.kinds.as_deref().map(Arc::from);
                std::iter::repeat_n(kinds, c.count as usize)
            })
            .collect();
        let agents = (0..cfg.agents)
            .map(|slot| Agent {
                kinds: class_of.get(slot as usize).cloned().flatten(),
                slot,
                epoch: 0,
                child: None,
                pid: 0,
                cgroup: None,
                tx: None,
                rx: None,
                observer: Observer::new(0, now),
                phase: Phase::Dead,
                in_flight: VecDeque::new(),
                kill_reason: None,
                current: None,
                consecutive_failures: 0,
                restarts: 0,
                completed: 0,
            })
            .collect();
        let state = State {
            agents,
            tasks: HashMap::new(),
            pending: VecDeque::new(),
            results: HashMap::new(),
            stream: VecDeque::new(),
            next_id: 0,
            slab: seg.slab(0),
            lent_buffers: 0,
            counters: Counters::default(),
            startup_failures: VecDeque::new(),
            fatal: None,
            stopping: false,
            cgroups,
            last_health: now,
            rng: now.elapsed().as_nanos() as u64
                ^ u64::from(std::process::id())
                ^ 0x9E37_79B9_7F4A_7C15,
            scratch: Vec::with_capacity(256),
            order: Vec::new(),
            held: HashMap::new(),
            next_held: 1,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            cv: Condvar::new(),
            seg,
            cfg,
            agent_bin,
            drivers: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            waker,
            exits,
            reaper,
            parent_read,
            _parent_write: parent_write,
        });
        {
            let mut st = shared.state.lock();
            st.spawn_all(&shared);
            if let Some(f) = &st.fatal {
                return Err(Error::CrashLoop(f.clone()));
            }
        }
        tracing::debug!(took = ?began.elapsed(), "agents spawned");
        let sh = shared.clone();
        let reactor = std::thread::Builder::new()
            .name("swarm-reactor".into())
            .spawn(move || reactor_loop(&sh))
            .map_err(|e| Error::Os("spawn reactor thread", e))?;
        *shared.waker.reactor.lock() = Some(reactor.thread().clone());
        let sup = Supervisor {
            shared,
            reactor: Some(reactor),
        };
        // On failure, dropping `sup` stops the agents and removes their cgroups.
        reservation.wait()?;
        tracing::debug!(took = ?began.elapsed(), "page buffers reserved");
        Ok(sup)
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
    pub fn submit_detached(&self, spec: TaskSpec) -> Result<u64, Error> {
        self.shared.submit(spec, Delivery::Stream)
    }

    /// Cancels a task: it ends now as [`Failure::Cancelled`] and is not retried. A task
    /// waiting for an agent is dropped; one an agent is running is stopped by killing that
    /// agent (it is replaced, and the rest of its queue goes to other agents without
    /// blame); one still queued behind others runs, and its result is discarded. Returns
    /// whether the task was still open.
    pub fn cancel(&self, id: u64) -> bool {
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

    /// Places `bytes` in page buffers, held for the caller like an output: a small input
    /// to go beside outputs in a fan-in ([`TaskSpec::inputs`]).
    pub fn hold(&self, bytes: &[u8]) -> Result<Held, Error> {
        let mut st = self.shared.state.lock();
        let h = st.slab.write_payload(Owner::Supervisor, bytes)?;
        let parts = bytes.len().div_ceil(st.slab.buffer_size()).max(1);
        let token = st.next_held;
        st.next_held += 1;
        st.held
            .insert(token, (h.to_raw(), bytes.len() as u64, parts));
        Ok(Held {
            id: token,
            len: bytes.len() as u64,
        })
    }

    /// Copies a held output out of the slab and frees it.
    pub fn take_held(&self, h: Held) -> Result<Vec<u8>, Error> {
        let mut st = self.shared.state.lock();
        let (raw, len, _) = st.held.remove(&h.id).ok_or(Error::UnknownHeld)?;
        let bytes = st.slab.read_payload(raw, len, Owner::Supervisor);
        let _ = st.slab.release_chain(raw, len, Owner::Supervisor);
        Ok(bytes?)
    }

    /// Copies the first `n` bytes of a held output, which stays held.
    pub fn peek_held(&self, h: Held, n: usize) -> Result<Vec<u8>, Error> {
        let st = self.shared.state.lock();
        let &(raw, len, _) = st.held.get(&h.id).ok_or(Error::UnknownHeld)?;
        let parts = st.slab.segments(raw, len, Owner::Supervisor)?;
        let mut out = Vec::with_capacity(n.min(len as usize));
        for p in parts {
            let take = (n - out.len()).min(p.len());
            out.extend_from_slice(&p[..take]);
            if out.len() == n {
                break;
            }
        }
        Ok(out)
    }

    /// Frees a held output.
    pub fn release_held(&self, h: Held) -> Result<(), Error> {
        let mut st = self.shared.state.lock();
        let (raw, len, _) = st.held.remove(&h.id).ok_or(Error::UnknownHeld)?;
        let _ = st.slab.release_chain(raw, len, Owner::Supervisor);
        Ok(())
    }

    /// Page buffers the caller holds as [`Held`] outputs.
    pub fn held_buffers(&self) -> usize {
        self.shared.state.lock().held.values().map(|h| h.2).sum()
    }

    /// The next result of a detached task, in completion order; `None` on timeout.
    pub fn recv(&self, timeout: Option<Duration>) -> Option<(u64, Outcome)> {
        self.shared.wait_for(timeout, |st| st.stream.pop_front())
    }

    /// A snapshot of agents, queues and counters.
    pub fn status(&self) -> Status {
        let st = self.shared.state.lock();
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
                    },
                    in_flight: a.in_flight.len(),
                    completed: a.completed,
                    restarts: a.restarts,
                    cgroup: a
                        .cgroup
                        .as_ref()
                        .map(|g| g.dirs().to_vec())
                        .unwrap_or_default(),
                })
                .collect(),
            pending: st.pending.len(),
            in_flight: st.agents.iter().map(|a| a.in_flight.len()).sum(),
            counters: st.counters.clone(),
            cgroups: st.cgroups.as_ref().map(|c| c.hierarchy().name()),
            fatal: st.fatal.clone(),
        }
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

    fn stop(&mut self, mode: Shutdown) -> Result<Counters, Error> {
        let sh = &self.shared;
        if mode == Shutdown::Drain {
            sh.wait_for(None, |st| {
                (st.fatal.is_some()
                    || (st.pending.is_empty() && st.agents.iter().all(|a| a.in_flight.is_empty())))
                .then_some(())
            });
        }
        let fatal = {
            let mut st = sh.state.lock();
            st.stopping = true;
            st.cancel_all("the supervisor is shutting down");
            // Relaxed: a request; agents poll it between tasks and after each wake-up.
            sh.seg
                .control()
                .shutdown
                .store(1, std::sync::atomic::Ordering::Relaxed);
            // A wake-up alone does not end an agent's wait for data: a STOP descriptor does,
            // at once instead of at its next heartbeat. A full ring needs none (the agent is
            // busy and sees the flag before its next task).
            for a in &mut st.agents {
                if let Some(tx) = a.tx.as_mut() {
                    let _ = tx.push(Descriptor::new(0, 0, crate::task::kinds::STOP));
                }
                if let Ok(h) = sh.seg.ring_header(a.slot, Direction::ToAgent) {
                    h.wake_consumer();
                }
            }
            st.fatal.clone()
        };
        // Give agents a moment to exit on their own, then kill what is left.
        let stopping = Instant::now();
        let deadline = stopping + Duration::from_secs(2);
        loop {
            let mut st = sh.state.lock();
            st.drive(sh);
            let alive: Vec<usize> = (0..st.agents.len())
                .filter(|&i| st.agents[i].child.is_some())
                .collect();
            if alive.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for i in alive {
                    st.kill(i, DeathCause::Supervisor);
                }
            }
            sh.cv.wait_for(&mut st, Duration::from_millis(5));
        }
        // Relaxed: a request flag; everything the reactor acts on is behind the state lock.
        sh.stop.store(true, Ordering::Relaxed);
        sh.wake_reactor();
        if let Some(r) = self.reactor.take() {
            let _ = r.join();
        }
        sh.reaper.stop();
        tracing::debug!(took = ?stopping.elapsed(), "agents stopped");
        let st = sh.state.lock();
        if let Some(m) = &st.cgroups {
            m.remove();
        }
        tracing::debug!(took = ?stopping.elapsed(), "shutdown complete");
        match fatal {
            Some(f) => Err(Error::CrashLoop(f)),
            None => Ok(st.counters.clone()),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.reactor.is_some() {
            let _ = self.stop(Shutdown::Cancel);
        }
    }
}

impl Shared {
    fn submit(&self, spec: TaskSpec, delivery: Delivery) -> Result<u64, Error> {
        let mut st = self.state.lock();
        if st.pending.len() >= self.cfg.max_pending {
            drop(st);
            self.wait_for(None, |st| {
                (st.fatal.is_some() || st.stopping || st.pending.len() < self.cfg.max_pending)
                    .then_some(())
            });
            st = self.state.lock();
        }
        if st.fatal.is_some() || st.stopping {
            return Err(Error::Stopped);
        }
        if !st.agents.iter().any(|a| a.takes(spec.kind)) {
            return Err(Error::NoAgentForKind(spec.kind));
        }
        if !spec.inputs.is_empty() && !spec.payload.is_empty() {
            return Err(Error::InvalidTask("both a payload and held inputs"));
        }
        if spec.inputs.iter().any(|h| !st.held.contains_key(&h.id))
            || (1..spec.inputs.len()).any(|i| spec.inputs[..i].contains(&spec.inputs[i]))
        {
            return Err(Error::UnknownHeld);
        }
        let inputs = spec
            .inputs
            .iter()
            .map(|h| st.held.remove(&h.id).expect("checked above"))
            .collect();
        let id = st.next_id;
        st.next_id += 1;
        st.tasks.insert(
            id,
            TaskRecord {
                spec,
                attempt: 1,
                blame: Vec::new(),
                delivery,
                lent: None,
                inputs,
            },
        );
        st.pending.push_back(id);
        st.dispatch(self);
        Ok(id)
    }

    /// Drives until `take` yields, spinning briefly before sleeping on the condition
    /// variable (which the reactor signals).
    fn wait_for<T>(
        &self,
        timeout: Option<Duration>,
        mut take: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let spin_until = start + self.cfg.wait_spin;
        let tick = Duration::from_millis(20);
        // Relaxed (all uses of `drivers`): a hint for the reactor; a stale value costs at
        // most one doorbell wake-up or one timed park, and the data is behind the lock.
        self.drivers.fetch_add(1, Ordering::Relaxed);
        let mut driving = true;
        let mut st = self.state.lock();
        let result = loop {
            st.drive(self);
            if let Some(v) = take(&mut st) {
                break Some(v);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) || (st.fatal.is_some() && !st.has_unreported()) {
                break take(&mut st);
            }
            if now < spin_until {
                MutexGuard::unlocked(&mut st, std::hint::spin_loop);
                continue;
            }
            if driving {
                driving = false;
                self.drivers.fetch_sub(1, Ordering::Relaxed);
                // The reactor may be parked rather than on the doorbell: let it switch.
                self.wake_reactor();
            }
            let until = deadline.map_or(now + tick, |d| d.min(now + tick));
            self.cv.wait_until(&mut st, until);
        };
        if driving {
            self.drivers.fetch_sub(1, Ordering::Relaxed);
        }
        result
    }

    fn wake_reactor(&self) {
        self.waker.wake();
    }
}

fn reactor_loop(sh: &Shared) {
    let tick = (sh.cfg.heartbeat_period / 4).max(Duration::from_millis(1));
    let doorbell = &sh.seg.control().doorbell;
    // Relaxed (`stop` and `drivers` here): see `Supervisor::stop` and `Shared::wait_for`.
    while !sh.stop.load(Ordering::Relaxed) {
        {
            let mut st = sh.state.lock();
            st.drive(sh);
        }
        if sh.drivers.load(Ordering::Relaxed) > 0 {
            std::thread::park_timeout(tick);
            continue;
        }
        let token = doorbell.prepare();
        let busy = {
            let st = sh.state.lock();
            st.agents.iter().any(|a| {
                sh.seg
                    .ring_header(a.slot, Direction::FromAgent)
                    .map(|h| !matches!(h.is_empty(), Ok(true)))
                    .unwrap_or(false)
            }) || !sh.exits.is_empty()
        };
        if !busy && !sh.stop.load(Ordering::Relaxed) && sh.drivers.load(Ordering::Relaxed) == 0 {
            doorbell.sleep(token, Some(tick));
        }
        doorbell.finish();
    }
}

impl State {
    fn has_unreported(&self) -> bool {
        !self.results.is_empty() || !self.stream.is_empty()
    }

    /// One pass: exits, completions, health, dispatch. Wakes waiters if anything ended.
    fn drive(&mut self, sh: &Shared) {
        let before = self.counters.completed + self.counters.failed;
        while let Ok((slot, epoch)) = sh.exits.try_recv() {
            if self.agents[slot as usize].epoch == epoch
                && self.agents[slot as usize].child.is_some()
            {
                self.on_exit(sh, slot as usize);
            }
        }
        let now = Instant::now();
        for i in 0..self.agents.len() {
            self.take_completions(sh, i);
            if let Phase::Starting(_) = self.agents[i].phase {
                self.check_ready(sh, i, now);
            }
        }
        if now.duration_since(self.last_health)
            >= (sh.cfg.heartbeat_period / 4).min(Duration::from_millis(10))
        {
            self.last_health = now;
            self.health(sh, now);
        }
        self.dispatch(sh);
        if self.counters.completed + self.counters.failed != before {
            sh.cv.notify_all();
        }
    }

    fn take_completions(&mut self, sh: &Shared, i: usize) {
        let mut buf = std::mem::take(&mut self.scratch);
        loop {
            buf.clear();
            let Some(rx) = self.agents[i].rx.as_mut() else {
                break;
            };
            match rx.pop_batch(&mut buf, 256) {
                Ok(0) => break,
                Ok(_) => {
                    for d in &buf {
                        self.on_completion(sh, i, d);
                    }
                }
                Err(e) => {
                    tracing::warn!(slot = i, "completion ring: {e}");
                    self.kill(i, DeathCause::Protocol);
                    break;
                }
            }
        }
        self.scratch = buf;
    }

    fn on_completion(&mut self, _sh: &Shared, i: usize, d: &Descriptor) {
        let slot = self.agents[i].slot;
        let agent = &mut self.agents[i];
        let pos = agent
            .in_flight
            .iter()
            .position(|f| f.id == d.task_id && f.attempt == d.attempt);
        let Some(pos) = pos else {
            // Unknown task, or a stale attempt: discard, freeing what it carried.
            self.counters.stale_completions += 1;
            if let Some(raw) = d.payload() {
                if self
                    .slab
                    .claim_chain(raw, d.len, Owner::Agent(slot), Owner::Supervisor)
                    .is_ok()
                {
                    let _ = self.slab.release_chain(raw, d.len, Owner::Supervisor);
                }
            }
            return;
        };
        let keep = d.kind == status::OK
            && self
                .tasks
                .get(&d.task_id)
                .is_some_and(|t| t.spec.keep_output);
        let mut held = None;
        let output = match d.payload() {
            None => Vec::new(),
            Some(raw) if keep => {
                // Checked and taken over, not copied: it stays in the slab for the caller.
                match self
                    .slab
                    .claim_chain(raw, d.len, Owner::Agent(slot), Owner::Supervisor)
                    .and_then(|()| self.slab.segments(raw, d.len, Owner::Supervisor))
                {
                    Ok(parts) => {
                        let token = self.next_held;
                        self.next_held += 1;
                        self.held.insert(token, (raw, d.len, parts.len()));
                        held = Some(Held {
                            id: token,
                            len: d.len,
                        });
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::warn!(slot, task = d.task_id, "bad completion payload: {e}");
                        self.kill(i, DeathCause::Protocol);
                        return;
                    }
                }
            }
            Some(raw) => {
                let read = self
                    .slab
                    .claim_chain(raw, d.len, Owner::Agent(slot), Owner::Supervisor)
                    .and_then(|()| {
                        let bytes = self.slab.read_payload(raw, d.len, Owner::Supervisor);
                        let _ = self.slab.release_chain(raw, d.len, Owner::Supervisor);
                        bytes
                    });
                match read {
                    Ok(b) => b,
                    Err(e) => {
                        // The agent broke the protocol: kill it; the task is requeued with
                        // the rest of its in-flight work, without blame.
                        tracing::warn!(slot, task = d.task_id, "bad completion payload: {e}");
                        self.kill(i, DeathCause::Protocol);
                        return;
                    }
                }
            }
        };
        let agent = &mut self.agents[i];
        agent.in_flight.remove(pos);
        agent.completed += 1;
        if agent.current.is_some_and(|(id, _)| id == d.task_id) {
            agent.current = None;
        }
        let attempts = self.tasks.get(&d.task_id).map_or(1, |t| t.attempt);
        let outcome = match d.kind {
            status::OK => Outcome::Completed {
                output,
                held,
                run_time: Duration::from_nanos(d.arg),
                slot,
                attempts,
            },
            status::UNKNOWN_KIND => Outcome::Failed(Failure::UnknownKind(
                self.tasks.get(&d.task_id).map_or(0, |t| t.spec.kind),
            )),
            _ => Outcome::Failed(Failure::Task(String::from_utf8_lossy(&output).into_owned())),
        };
        self.finish(d.task_id, outcome);
    }

    /// Ends a task: frees its lent payload and delivers its outcome. Each task ends once.
    fn finish(&mut self, id: u64, outcome: Outcome) {
        let Some(rec) = self.tasks.remove(&id) else {
            return;
        };
        if let Some((raw, len, parts)) = rec.lent {
            let _ = self.slab.release_chain(raw, len, Owner::Supervisor);
            self.lent_buffers -= parts;
        }
        for (raw, len, _) in rec.inputs {
            let _ = self.slab.release_chain(raw, len, Owner::Supervisor);
        }
        if outcome.is_completed() {
            self.counters.completed += 1;
        } else {
            self.counters.failed += 1;
        }
        match rec.delivery {
            Delivery::Handle => {
                self.results.insert(id, outcome);
            }
            Delivery::Stream => self.stream.push_back((id, outcome)),
        }
    }

    fn dispatch(&mut self, sh: &Shared) {
        if self.pending.is_empty() || self.stopping || self.fatal.is_some() {
            return;
        }
        let n = self.agents.len();
        let depth = sh.cfg.queue_depth as usize;
        let ready = self
            .agents
            .iter()
            .filter(|a| a.phase == Phase::Ready && a.in_flight.len() < depth)
            .count();
        if ready == 0 {
            return;
        }
        let share = self.pending.len().div_ceil(ready).max(1);
        // Least-loaded first; ties go to the lowest slot, so a trickle of tasks keeps one
        // agent hot (spinning) instead of waking a different sleeping agent each time.
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(0..n);
        order.sort_by_key(|&i| self.agents[i].in_flight.len());
        let mut batch = std::mem::take(&mut self.scratch);
        for &i in &order {
            if self.pending.is_empty() {
                break;
            }
            let a = &self.agents[i];
            if a.phase != Phase::Ready || a.in_flight.len() >= depth {
                continue;
            }
            let room = (depth - a.in_flight.len()).min(share);
            batch.clear();
            if a.kinds.is_none() {
                while batch.len() < room {
                    let Some(&id) = self.pending.front() else {
                        break;
                    };
                    match self.descriptor(id) {
                        Some(d) => {
                            self.pending.pop_front();
                            batch.push(d);
                        }
                        None => break, // no slab credit for its payload now
                    }
                }
            } else {
                // A specialist: the oldest pending tasks of the kinds it takes.
                let mut k = 0;
                while batch.len() < room && k < self.pending.len() {
                    let id = self.pending[k];
                    let kind = self.tasks.get(&id).map_or(u32::MAX, |t| t.spec.kind);
                    if !self.agents[i].takes(kind) {
                        k += 1;
                        continue;
                    }
                    match self.descriptor(id) {
                        Some(d) => {
                            self.pending.remove(k);
                            batch.push(d);
                        }
                        None => break,
                    }
                }
            }
            if batch.is_empty() {
                if self.agents[i].kinds.is_some() {
                    continue; // nothing of its kinds; the next agent may take others
                }
                break;
            }
            let pushed = match self.agents[i].tx.as_mut().map(|tx| tx.push_batch(&batch)) {
                Some(Ok(p)) => p,
                _ => 0,
            };
            for d in &batch[..pushed] {
                self.agents[i].in_flight.push_back(InFlight {
                    id: d.task_id,
                    attempt: d.attempt,
                });
            }
            for d in batch[pushed..].iter().rev() {
                self.pending.push_front(d.task_id);
            }
        }
        self.scratch = batch;
        self.order = order;
    }

    /// The descriptor for a task's next attempt, lending its payload if it has one and
    /// the slab has credit (at most half the buffers are lent, so agents always have room
    /// for their outputs).
    fn descriptor(&mut self, id: u64) -> Option<Descriptor> {
        let half = self.slab.count() as usize / 2;
        let bs = self.slab.buffer_size();
        let rec = self.tasks.get_mut(&id)?;
        let mut d = Descriptor::new(id, rec.attempt, rec.spec.kind);
        d.arg = rec.spec.arg;
        if rec.spec.keep_output && !rec.spec.drains {
            d.flags |= flags::KEEP_RESERVE;
        }
        if let [(raw, len, _)] = rec.inputs[..] {
            d.buffer = raw;
            d.len = len;
        } else if !rec.inputs.is_empty() {
            if rec.lent.is_none() {
                let list: Vec<u8> = rec
                    .inputs
                    .iter()
                    .flat_map(|&(raw, len, _)| [raw.to_ne_bytes(), len.to_ne_bytes()])
                    .flatten()
                    .collect();
                let parts = list.len().div_ceil(bs);
                let h = self.slab.write_payload(Owner::Supervisor, &list).ok()?;
                rec.lent = Some((h.to_raw(), list.len() as u64, parts));
                self.lent_buffers += parts;
            }
            let (raw, len, _) = rec.lent.expect("lent above");
            d.buffer = raw;
            d.len = len;
            d.flags |= flags::INPUT_LIST;
        } else if !rec.spec.payload.is_empty() {
            if rec.lent.is_none() {
                let parts = rec.spec.payload.len().div_ceil(bs);
                if self.lent_buffers + parts > half && self.lent_buffers > 0 {
                    return None;
                }
                let h = self
                    .slab
                    .write_payload(Owner::Supervisor, &rec.spec.payload)
                    .ok()?;
                rec.lent = Some((h.to_raw(), rec.spec.payload.len() as u64, parts));
                self.lent_buffers += parts;
            }
            let (raw, len, _) = rec.lent.expect("lent above");
            d.buffer = raw;
            d.len = len;
        } else {
            d.buffer = PageHandle::NIL_RAW;
        }
        Some(d)
    }

    fn health(&mut self, sh: &Shared, now: Instant) {
        let hang = sh.cfg.hang_timeout.unwrap_or(sh.cfg.heartbeat_period * 3);
        for i in 0..self.agents.len() {
            let slot = self.agents[i].slot;
            let Ok(hb) = sh.seg.heartbeat(slot) else {
                continue;
            };
            let phase = self.agents[i].phase;
            match phase {
                Phase::Starting(since)
                    if !self.check_ready(sh, i, now)
                        && now.duration_since(since) > sh.cfg.startup_timeout =>
                {
                    self.kill(i, DeathCause::Hang);
                }
                Phase::Ready => {
                    let a = &mut self.agents[i];
                    match a.observer.observe(hb, now) {
                        Liveness::Stale(d) if d > hang => {
                            tracing::warn!(slot, silent_ms = d.as_millis() as u64, "agent hung");
                            self.kill(i, DeathCause::Hang);
                            continue;
                        }
                        Liveness::OtherIncarnation { .. } => {
                            self.kill(i, DeathCause::Protocol);
                            continue;
                        }
                        _ => {}
                    }
                    // Task timeouts: measured from when we first see the agent report it.
                    let reported = hb.current().and_then(|(id, att)| {
                        a.in_flight
                            .iter()
                            .any(|f| f.id == id && f.attempt == att)
                            .then_some(id)
                    });
                    match (reported, a.current) {
                        (Some(id), Some((cur, _))) if id == cur => {}
                        (Some(id), _) => a.current = Some((id, now)),
                        (None, _) => a.current = None,
                    }
                    if let Some((id, started)) = a.current {
                        let limit = self.tasks.get(&id).and_then(|t| t.spec.timeout);
                        if limit.is_some_and(|l| now.duration_since(started) > l) {
                            self.kill(i, DeathCause::Timeout);
                        }
                    }
                }
                Phase::Backoff(until) if now >= until => self.spawn(sh, i as u32),
                Phase::Dead => self.spawn(sh, i as u32),
                _ => {}
            }
        }
    }

    /// Moves a starting agent to ready once its heartbeat line says so for its epoch.
    fn check_ready(&mut self, sh: &Shared, i: usize, now: Instant) -> bool {
        let a = &mut self.agents[i];
        let Ok(hb) = sh.seg.heartbeat(a.slot) else {
            return false;
        };
        let mine = (hb.raw() >> 32) as u32 == a.epoch;
        if mine && matches!(hb.state(), Some(AgentState::Idle | AgentState::Busy)) {
            if let Phase::Starting(since) = a.phase {
                tracing::debug!(slot = a.slot, epoch = a.epoch, startup = ?now.duration_since(since), "agent ready");
            }
            a.phase = Phase::Ready;
            a.observer.observe(hb, now);
            return true;
        }
        false
    }

    /// Kills an agent, remembering why.
    fn kill(&mut self, i: usize, why: DeathCause) {
        let a = &mut self.agents[i];
        if a.child.is_none() {
            return;
        }
        a.kill_reason.get_or_insert(why);
        if a.pid != 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(a.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn on_exit(&mut self, sh: &Shared, i: usize) {
        let slot = self.agents[i].slot;
        let Some(mut child) = self.agents[i].child.take() else {
            return;
        };
        let st = child.wait().ok();
        let oom = self.agents[i]
            .cgroup
            .as_ref()
            .is_some_and(|g| g.oom_kills() > 0);
        let cause = match (self.agents[i].kill_reason.take(), st) {
            (Some(c), _) => c,
            (None, Some(s)) if s.signal() == Some(libc::SIGKILL) && oom => DeathCause::Oom,
            (None, Some(s)) if s.signal().is_some() => DeathCause::Signal(s.signal().unwrap_or(0)),
            (None, Some(s)) => DeathCause::Exit(s.code().unwrap_or(-1)),
            (None, None) => DeathCause::Exit(-1),
        };
        let was_ready = self.agents[i].phase == Phase::Ready;
        if !self.stopping {
            *self.counters.deaths.entry(cause.bucket()).or_insert(0) += 1;
            tracing::info!(slot, pid = self.agents[i].pid, %cause, "agent died");
        }
        // Completions it published before dying are real results.
        self.take_completions(sh, i);
        let culprit = if cause.blames_task() {
            let a = &self.agents[i];
            let reported = sh
                .seg
                .heartbeat(slot)
                .ok()
                .and_then(|hb| hb.current())
                .and_then(|(id, att)| {
                    a.in_flight
                        .iter()
                        .any(|f| f.id == id && f.attempt == att)
                        .then_some(id)
                });
            reported.or_else(|| a.in_flight.front().map(|f| f.id))
        } else {
            None
        };
        let reclaimed = self.slab.reclaim(Owner::Agent(slot));
        if reclaimed > 0 {
            tracing::debug!(slot, reclaimed, "reclaimed page buffers of dead agent");
        }
        let in_flight: Vec<InFlight> = self.agents[i].in_flight.drain(..).collect();
        for f in in_flight.iter().rev() {
            let k = sh.cfg.quarantine_after as usize;
            let Some(rec) = self.tasks.get_mut(&f.id) else {
                continue;
            };
            rec.attempt += 1;
            self.counters.tasks_retried += 1;
            if Some(f.id) == culprit {
                rec.blame.push(cause);
                if rec.blame.len() >= k {
                    let blame = rec.blame.clone();
                    self.finish(f.id, Outcome::Failed(Failure::Quarantined(blame)));
                    continue;
                }
            }
            self.pending.push_front(f.id);
        }
        let a = &mut self.agents[i];
        a.current = None;
        a.pid = 0;
        if let Some(g) = a.cgroup.take() {
            if let Err(e) = g.remove() {
                tracing::warn!(slot, "removing agent cgroup: {e}");
            }
        }
        a.tx = None;
        a.rx = None;
        if self.stopping {
            a.phase = Phase::Stopped;
            return;
        }
        let startup_failure = !was_ready
            && cause != DeathCause::Signal(libc::SIGKILL)
            && cause != DeathCause::Supervisor;
        if startup_failure {
            self.startup_failure(sh, i, cause.to_string());
        } else {
            a.consecutive_failures = 0;
            self.spawn(sh, slot);
        }
    }

    fn fail_fatal(&mut self, msg: String) {
        tracing::error!("{msg}");
        self.fatal = Some(msg.clone());
        self.cancel_all(&msg);
        for i in 0..self.agents.len() {
            self.kill(i, DeathCause::Supervisor);
            if self.agents[i].child.is_none() {
                self.agents[i].phase = Phase::Stopped;
            }
        }
    }

    fn cancel_all(&mut self, why: &str) {
        let ids: Vec<u64> = self.tasks.keys().copied().collect();
        for id in ids {
            self.finish(id, Outcome::Failed(Failure::Cancelled(why.to_string())));
        }
        self.pending.clear();
        for a in &mut self.agents {
            a.in_flight.clear();
        }
    }

    /// Starts a new incarnation in slot `slot`.
    fn spawn(&mut self, sh: &Shared, slot: u32) {
        if let Some(mut cmd) = self.prepare_spawn(sh, slot) {
            let spawned = cmd.spawn();
            self.spawned(sh, slot, spawned);
        }
    }

    /// Starts every slot's first incarnation. `Command::spawn` returns once the child has
    /// joined its cgroups and exec'd; joining a cgroup can wait for an RCU grace period
    /// (milliseconds), so the agents are started side by side instead of one after another.
    fn spawn_all(&mut self, sh: &Shared) {
        let mut cmds: Vec<(u32, Command)> = (0..self.agents.len() as u32)
            .filter_map(|slot| self.prepare_spawn(sh, slot).map(|c| (slot, c)))
            .collect();
        let threads = cmds.len().clamp(1, 16);
        let per = cmds.len().div_ceil(threads).max(1);
        let results: Vec<(u32, std::io::Result<Child>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = cmds
                .chunks_mut(per)
                .map(|chunk| {
                    let slots: Vec<u32> = chunk.iter().map(|(slot, _)| *slot).collect();
                    let worker = std::thread::Builder::new()
                        .name("swarm-spawn".into())
                        .spawn_scoped(scope, move || {
                            chunk
                                .iter_mut()
                                .map(|(slot, cmd)| (*slot, cmd.spawn()))
                                .collect::<Vec<_>>()
                        });
                    (slots, worker)
                })
                .collect();
            // A chunk whose thread could not start (or died) counts as failed starts:
            // those slots back off and are respawned one at a time by `drive`.
            workers
                .into_iter()
                .flat_map(|(slots, worker)| match worker.map(|w| w.join()) {
                    Ok(Ok(done)) => done,
                    _ => slots
                        .into_iter()
                        .map(|slot| (slot, Err(std::io::Error::other("spawn thread failed"))))
                        .collect(),
                })
                .collect()
        });
        for (slot, r) in results {
            self.spawned(sh, slot, r);
        }
    }

    /// Resets slot `slot` for a new incarnation and builds its command (cgroup joined
    /// before exec).
    fn prepare_spawn(&mut self, sh: &Shared, slot: u32) -> Option<Command> {
        if self.stopping || self.fatal.is_some() {
            return None;
        }
        let i = slot as usize;
        let a = &mut self.agents[i];
        if a.epoch > 0 {
            a.restarts += 1;
            self.counters.agent_restarts += 1;
        }
        a.epoch += 1;
        a.tx = None;
        a.rx = None;
        for dir in [Direction::ToAgent, Direction::FromAgent] {
            if let Ok(h) = sh.seg.ring_header(slot, dir) {
                h.reset();
            }
        }
        if let Ok(hb) = sh.seg.heartbeat(slot) {
            hb.reset();
        }
        a.tx = sh.seg.producer(slot, Direction::ToAgent).ok();
        a.rx = sh.seg.consumer(slot, Direction::FromAgent).ok();
        let now = Instant::now();
        a.observer = Observer::new(a.epoch, now);
        a.current = None;
        a.kill_reason = None;

        let config = AgentConfig {
            segment_fd: sh.seg.raw_fd(),
            slot,
            epoch: a.epoch,
            parent_fd: Some(sh.parent_read.as_raw_fd()),
            heartbeat_period: sh.cfg.heartbeat_period,
            spin: sh.cfg.agent_spin,
        };
        let mut cmd = Command::new(&sh.agent_bin);
        cmd.args(config.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        crate::spawn::inherit_fds(&mut cmd, &[sh.seg.raw_fd(), sh.parent_read.as_raw_fd()]);
        a.cgroup = None;
        if let Some(m) = &self.cgroups {
            match m.create_agent(slot, a.epoch, &sh.cfg.limits) {
                Ok(g) => {
                    cgroup::join_before_exec(&mut cmd, &g);
                    a.cgroup = Some(g);
                }
                Err(e) => tracing::warn!(slot, "cannot create agent cgroup: {e}"),
            }
        }
        Some(cmd)
    }

    /// Records how starting slot `slot` went.
    fn spawned(&mut self, sh: &Shared, slot: u32, spawned: std::io::Result<Child>) {
        let i = slot as usize;
        let a = &mut self.agents[i];
        match spawned {
            Ok(child) => {
                a.pid = child.id();
                let pid = a.pid;
                a.child = Some(child);
                a.phase = Phase::Starting(Instant::now());
                if let Err(e) = sh.reaper.watch(pid, slot, a.epoch) {
                    tracing::warn!(slot, "cannot watch agent: {e}");
                }
            }
            Err(e) => {
                // As good as an agent that died at once: it counts toward the crash loop.
                tracing::warn!(slot, "cannot start {}: {e}", sh.agent_bin.display());
                if let Some(g) = a.cgroup.take() {
                    let _ = g.remove();
                }
                a.child = None;
                *self.counters.deaths.entry("exit").or_insert(0) += 1;
                self.startup_failure(sh, i, format!("cannot start: {e}"));
            }
        }
    }

    /// Records an agent that never became ready: backs its slot off exponentially with
    /// jitter, or stops the supervisor once the crash-loop intensity is exceeded.
    fn startup_failure(&mut self, sh: &Shared, i: usize, why: String) {
        let now = Instant::now();
        let policy = sh.cfg.restart;
        self.startup_failures.push_back(now);
        while self
            .startup_failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.period)
        {
            self.startup_failures.pop_front();
        }
        if self.startup_failures.len() as u32 > policy.intensity {
            let msg = format!(
                "{} agents died before becoming ready within {:?} (last: slot {i}: {why}; agent {})",
                self.startup_failures.len(),
                policy.period,
                sh.agent_bin.display()
            );
            self.fail_fatal(msg);
            return;
        }
        let a = &mut self.agents[i];
        a.consecutive_failures += 1;
        let exp = a.consecutive_failures.saturating_sub(1).min(16);
        let delay = policy
            .backoff_base
            .saturating_mul(1 << exp)
            .min(policy.backoff_max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = 0.75 + (self.rng % 1000) as f64 / 2000.0; // 0.75 .. 1.25
        self.agents[i].phase = Phase::Backoff(now + delay.mul_f64(jitter));
    }
}

/// The thread that watches agents' pidfds.
struct Reaper {
    tx: crossbeam_channel::Sender<ReaperMsg>,
    wake: OwnedFd,
    thread: Mutex<Option<JoinHandle<()>>>,
}

enum ReaperMsg {
    Watch(OwnedFd, u32, u32),
    Quit,
}

impl Reaper {
    fn start(exits: crossbeam_channel::Sender<(u32, u32)>, waker: Waker) -> Result<Reaper, Error> {
        // SAFETY: eventfd with valid flags; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(Error::Os("eventfd", std::io::Error::last_os_error()));
        }
        // SAFETY: `efd` is a fresh descriptor we own.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let wake_raw = wake.as_raw_fd();
        let (tx, rx) = crossbeam_channel::unbounded::<ReaperMsg>();
        let thread = std::thread::Builder::new()
            .name("swarm-reaper".into())
            .spawn(move || reaper_loop(wake_raw, rx, exits, waker))
            .map_err(|e| Error::Os("spawn reaper thread", e))?;
        Ok(Reaper {
            tx,
            wake,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn poke(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn watch(&self, pid: u32, slot: u32, epoch: u32) -> std::io::Result<()> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let _ = self.tx.send(ReaperMsg::Watch(fd, slot, epoch));
        self.poke();
        Ok(())
    }

    fn stop(&self) {
        let _ = self.tx.send(ReaperMsg::Quit);
        self.poke();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn reaper_loop(
    wake: RawFd,
    rx: crossbeam_channel::Receiver<ReaperMsg>,
    exits: crossbeam_channel::Sender<(u32, u32)>,
    waker: Waker,
) {
    let mut watched: Vec<(OwnedFd, u32, u32)> = Vec::new();
    loop {
        let mut fds: Vec<libc::pollfd> = std::iter::once(wake)
            .chain(watched.iter().map(|(fd, _, _)| fd.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            let mut b = [0u8; 8];
            // SAFETY: reads at most 8 bytes into `b` from our eventfd.
            unsafe { libc::read(wake, b.as_mut_ptr().cast(), 8) };
            while let Ok(m) = rx.try_recv() {
                match m {
                    ReaperMsg::Watch(fd, slot, epoch) => watched.push((fd, slot, epoch)),
                    ReaperMsg::Quit => return,
                }
            }
        }
        let mut k = 0;
        for p in &fds[1..] {
            if p.revents != 0 {
                let (_, slot, epoch) = watched.remove(k);
                let _ = exits.send((slot, epoch));
            } else {
                k += 1;
            }
        }
        if fds[1..].iter().any(|p| p.revents != 0) {
            waker.wake();
        }
    }
}

/// Wakes the reactor wherever it sleeps: on the doorbell futex or parked.
#[derive(Clone)]
struct Waker {
    seg: Arc<Segment>,
    reactor: Arc<Mutex<Option<std::thread::Thread>>>,
}

impl Waker {
    fn wake(&self) {
        self.seg.control().doorbell.wake();
        if let Some(t) = self.reactor.lock().as_ref() {
            t.unpark();
        }
    }
}
