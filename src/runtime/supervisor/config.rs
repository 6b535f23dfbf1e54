//! How a supervisor is configured: the builder and the policies it takes.

use super::error::Error;
use super::Supervisor;
use crate::runtime::cgroup::{Hierarchy, Limits};
use crate::runtime::sandbox::SandboxPolicy;
use crate::runtime::task::TaskKind;
use crate::shm::segment::SegmentConfig;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Fail what has not finished with [`Failure::Cancelled`](crate::runtime::task::Failure::Cancelled).
    Cancel,
}

/// A group of agents that take only some task kinds (specialists), or any (`kinds: None`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentClass {
    /// A name for status and logs (`parser`, `extractor`, ...).
    pub name: String,
    /// Agents in the class.
    pub count: u32,
    /// The task kinds they take; `None` takes every kind.
    pub kinds: Option<Vec<TaskKind>>,
    /// Their cgroup limits, if not the supervisor's ([`SupervisorBuilder::limits`]).
    pub limits: Option<Limits>,
}

impl AgentClass {
    /// `count` agents named `name` taking `kinds` (`None`: every kind), with the
    /// supervisor's limits.
    pub fn new(name: &str, count: u32, kinds: Option<Vec<TaskKind>>) -> Self {
        Self {
            name: name.into(),
            count,
            kinds,
            limits: None,
        }
    }

    /// The same class with limits of its own.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// Configures and starts a [`Supervisor`].
#[derive(Debug, Clone)]
pub struct SupervisorBuilder {
    pub(super) agents: u32,
    pub(super) agent_bin: Option<PathBuf>,
    pub(super) limits: Limits,
    pub(super) cgroups: CgroupMode,
    pub(super) hierarchy: Option<Hierarchy>,
    pub(super) heartbeat_period: Duration,
    pub(super) hang_timeout: Option<Duration>,
    pub(super) startup_timeout: Duration,
    pub(super) queue_depth: u32,
    pub(super) max_pending: usize,
    pub(super) quarantine_after: u32,
    pub(super) max_attempts: u32,
    pub(super) restart: RestartPolicy,
    pub(super) segment: SegmentConfig,
    pub(super) agent_spin: u32,
    pub(super) wait_spin: Duration,
    pub(super) classes: Vec<AgentClass>,
    pub(super) kind_timeouts: HashMap<u32, Duration>,
    pub(super) task_timeout: Option<Duration>,
    pub(super) probe_timeout: Duration,
    pub(super) sandbox: SandboxPolicy,
    pub(super) agent_buffers: Option<u32>,
    pub(super) priority_aging: Duration,
    pub(super) scheduling: super::strategy::Scheduling,
    pub(super) elastic: Option<(u32, u32)>,
    pub(super) scale_up_after: Duration,
    pub(super) retire_after: Duration,
    pub(super) graph_flow: super::flow::GraphFlow,
    pub(super) topics: Vec<String>,
    pub(super) cache: Option<(usize, u64)>,
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
            max_attempts: 20,
            restart: RestartPolicy::default(),
            segment: SegmentConfig {
                agent_slots: 2,
                ring_capacity: 1024,
                buffer_size: 64 * 1024,
                buffer_count: 1024,
                agent_buffers: 512,
                topics: 4,
                topic_capacity: 256,
                state_entries: 1024,
            },
            agent_buffers: None,
            priority_aging: Duration::from_secs(1),
            scheduling: Default::default(),
            elastic: None,
            scale_up_after: Duration::from_millis(5),
            retire_after: Duration::from_secs(2),
            graph_flow: Default::default(),
            topics: Vec::new(),
            cache: None,
            agent_spin: 2000,
            wait_spin: Duration::from_micros(100),
            classes: Vec::new(),
            kind_timeouts: HashMap::new(),
            task_timeout: None,
            probe_timeout: Duration::from_secs(10),
            sandbox: SandboxPolicy::default(),
        }
    }
}

impl SupervisorBuilder {
    /// Agents in classes that take only some task kinds (specialists). Replaces
    /// [`SupervisorBuilder::agents`]: the number of agents is the classes' total, in slot
    /// order. A task is dispatched only to agents whose class takes its kind.
    pub fn agent_classes(mut self, classes: Vec<AgentClass>) -> Self {
        self.agents = classes.iter().map(|c| c.count).sum::<u32>().max(1);
        self.elastic = None;
        self.classes = classes;
        self
    }

    /// Number of agents (default 2).
    pub fn agents(mut self, n: u32) -> Self {
        self.agents = n.max(1);
        self.elastic = None;
        self
    }

    /// An elastic pool of `min..=max` agents: it starts with `min`, grows at a health
    /// check (every 10 ms at most) while the oldest pending task has waited past
    /// [`SupervisorBuilder::scale_up_after`], by as many agents as the queue would fill, and retires an agent idle past
    /// [`SupervisorBuilder::retire_after`] while more than `min` run, never within that
    /// time of growing (no spawn-retire thrash). Only idle agents retire: nothing is lost.
    /// `min == max` is a fixed pool.
    pub fn elastic(mut self, min: u32, max: u32) -> Self {
        let max = max.max(1);
        self.agents = max;
        self.elastic = (min.max(1) < max).then_some((min.max(1), max));
        self
    }

    /// How long the oldest pending task may wait before an elastic pool grows (default
    /// 5 ms).
    pub fn scale_up_after(mut self, d: Duration) -> Self {
        self.scale_up_after = d;
        self
    }

    /// How long an agent of an elastic pool may be idle before it is retired (default 2 s).
    pub fn retire_after(mut self, d: Duration) -> Self {
        self.retire_after = d;
        self
    }
    /// The agent executable (default: `agent-bin` beside the running executable).
    pub fn agent_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent_bin = Some(path.into());
        self
    }
    /// One-binary mode: the running executable is also the agent. Its `main` must call
    /// [`crate::runtime::agent::serve_if_agent`] first thing; `build()` checks that it does.
    pub fn agent_current_exe(mut self) -> Self {
        self.agent_bin = Some(std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()));
        self
    }
    /// Run-time limit for every task of `kind` that sets none of its own
    /// ([`TaskSpec::timeout`](crate::runtime::task::TaskSpec::timeout)): a task that runs longer is killed with its agent and
    /// blamed as a `timeout`.
    pub fn kind_timeout(mut self, kind: TaskKind, limit: Duration) -> Self {
        self.kind_timeouts.insert(kind.get(), limit);
        self
    }
    /// Run-time limit for every task that has none of its own or of its kind (none by
    /// default). Without any limit, a handler that never returns (a deadlock, a read that
    /// blocks for ever) keeps its agent busy for ever, and `shutdown(Drain)` waits for it:
    /// the heartbeat proves the process alive, not the handler making progress.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }
    /// How long `build()` waits for the agent executable to answer the probe (default
    /// 10 s): longer for agents that do much before `serve_if_agent`.
    pub fn probe_timeout(mut self, limit: Duration) -> Self {
        self.probe_timeout = limit;
        self
    }
    /// The sandbox each agent applies before its first task (default: every measure the
    /// kernel allows, each one it refuses a warning; no file readable). See
    /// [`crate::runtime::sandbox`]. Give the paths agents must read (documents they open
    /// by path) in [`SandboxPolicy::read_paths`]; [`SandboxPolicy::off`] turns it off.
    pub fn sandbox(mut self, policy: SandboxPolicy) -> Self {
        self.sandbox = policy;
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
    /// Deaths of agents holding a task, whoever is blamed, after which it fails as
    /// [`Failure::Abandoned`](crate::runtime::task::Failure::Abandoned) instead of being
    /// retried again (default 20). Bounds what a task can cost when its agents die without
    /// the deaths being put on it (an agent that hides what it runs, SIGKILLs from
    /// outside).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
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
    /// Page buffers in each agent's own pool, where it writes its outputs until the
    /// supervisor takes them: the largest output an agent can return is this many buffers
    /// (default half the count given to [`SupervisorBuilder::buffers`]). Its pages are
    /// allocated as the agent first uses them, against its memory limit.
    pub fn agent_buffers(mut self, count: u32) -> Self {
        self.agent_buffers = Some(count);
        self
    }
    /// The aging step of priorities (default 1 s): a waiting task is never passed by a
    /// task submitted more than the difference in their priorities times this after it, so
    /// a low-priority task still runs under a flood of higher ones.
    pub fn priority_aging(mut self, step: Duration) -> Self {
        self.priority_aging = step;
        self
    }

    /// Flow control for graphs (default none): at most `sources` graph sources running at
    /// once, and none let in while outputs on edges to runnable nodes take `edge_bytes` or
    /// more (see [`GraphFlow`](super::GraphFlow)). For graphs whose first stages outrun
    /// their later ones.
    pub fn graph_flow(mut self, flow: super::flow::GraphFlow) -> Self {
        self.graph_flow = flow;
        self
    }

    /// A bus topic of the embedder's (up to 64 bytes of name; the runtime's own,
    /// [`crate::runtime::bus::RUNTIME_TOPICS`], come first): the supervisor and every agent
    /// may publish on it and subscribe to it.
    pub fn topic(mut self, name: impl Into<String>) -> Self {
        self.topics.push(name.into());
        self
    }

    /// Messages each topic keeps before the oldest is overwritten (default 256, a power
    /// of two): how far a subscriber may fall behind before it lags.
    pub fn topic_capacity(mut self, n: u32) -> Self {
        self.segment.topic_capacity = n;
        self
    }

    /// The shared cache's bounds: `entries` keys and `bytes` of values at most (default
    /// 1,024 keys and an eighth of the supervisor's page buffers; the values live there).
    /// Past either, the least recently used value nobody is reading is evicted.
    pub fn cache(mut self, entries: usize, bytes: u64) -> Self {
        self.cache = Some((entries, bytes));
        self
    }

    /// How tasks are given to agents (default least-loaded; see
    /// [`Scheduling`](super::Scheduling)).
    pub fn scheduling(mut self, s: super::strategy::Scheduling) -> Self {
        self.scheduling = s;
        self
    }

    /// [`SupervisorBuilder::priority_aging`] in nanoseconds.
    pub(super) fn priority_aging_ns(&self) -> u64 {
        self.priority_aging.as_nanos().min(u128::from(u64::MAX)) as u64
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

    /// How long a caller waiting for a result ([`Supervisor::recv`], [`TaskHandle`](super::TaskHandle))
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
