//! Snapshots of the supervisor: agents, queues and counters.

use super::*;

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
}
