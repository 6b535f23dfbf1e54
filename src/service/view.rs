//! [`View`]: one snapshot of a running swarm, made from the supervisor's status, the
//! job's [`Tally`] and `/proc`. `swarm status --json` prints it, `swarm top` draws it and
//! `/metrics` encodes it, so all three say the same.

use crate::runtime::procfs;
use crate::supervisor::{KindCounters, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the job has done, counted as documents finish (shared with the observers).
#[derive(Debug, Default)]
pub struct Tally {
    /// Documents finished ok.
    pub documents_ok: AtomicU64,
    /// Documents finished with an error line.
    pub documents_failed: AtomicU64,
    /// Pages extracted.
    pub pages: AtomicU64,
}

impl Tally {
    /// Counts a finished document of `pages` pages.
    pub fn finished(&self, ok: bool, pages: u64) {
        // Relaxed: counters read for display; nothing is ordered by them.
        if ok {
            self.documents_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.documents_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.pages.fetch_add(pages, Ordering::Relaxed);
    }
}

/// One agent in a [`View`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    /// Slot.
    pub slot: u32,
    /// Process id (0 when not running).
    pub pid: u32,
    /// The supervisor's view of it: `starting`, `ready`, `backoff`, `dead`, ...
    pub phase: String,
    /// What the agent reports (`idle`, `busy`, `waiting_for_room`, ...).
    pub reported: String,
    /// Resident memory, KiB (0 when unknown).
    pub rss_kib: u64,
    /// Tasks it completed (this slot, all incarnations).
    pub tasks_done: u64,
    /// Times the slot was respawned.
    pub restarts: u64,
    /// Milliseconds since its heartbeat last changed.
    pub heartbeat_age_ms: u64,
    /// The task it runs: id, kind and for how long (ms).
    pub current_task: Option<(u64, u32, u64)>,
    /// Tasks on its ring or running.
    pub in_flight: usize,
}

/// One sample of the throughput history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the swarm started.
    pub at_s: f64,
    /// Documents finished by then.
    pub documents: u64,
    /// Pages by then.
    pub pages: u64,
    /// Tasks ended by then.
    pub tasks: u64,
}

/// A snapshot of a running swarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// The supervisor's pid.
    pub pid: u32,
    /// What it runs: `run` or `serve`.
    pub command: String,
    /// Seconds since it started.
    pub uptime_s: f64,
    /// Documents finished ok.
    pub documents_ok: u64,
    /// Documents finished with an error line.
    pub documents_failed: u64,
    /// Pages extracted.
    pub pages: u64,
    /// Tasks waiting for an agent.
    pub queue_depth: usize,
    /// Tasks on agents.
    pub in_flight: usize,
    /// The agents.
    pub agents: Vec<AgentView>,
    /// Agent deaths by cause.
    pub deaths: BTreeMap<String, u64>,
    /// Agents started to replace dead ones.
    pub agent_restarts: u64,
    /// Task attempts requeued after an agent died.
    pub tasks_retried: u64,
    /// Ended tasks and their run times, by task kind.
    pub tasks_by_kind: BTreeMap<u32, KindCounters>,
    /// The supervisor's page buffers, and those in use.
    pub slab_buffers: usize,
    /// Of those, in use.
    pub slab_in_use: usize,
    /// CPU seconds of the supervisor's process (its threads included).
    pub supervisor_cpu_seconds: f64,
    /// The supervisor's resident memory, KiB.
    pub supervisor_rss_kib: u64,
    /// Documents, pages and tasks over time, oldest first (one sample a second, the last
    /// two minutes).
    pub throughput: Vec<Sample>,
    /// `serve`: jobs by state (`queued`, `running`, `done`, `cancelled`).
    pub jobs: BTreeMap<String, u64>,
}

impl View {
    /// The view of the supervisor whose status is `st`, running `command` for `uptime_s`,
    /// whose job has done `tally`.
    pub fn of(st: &Status, tally: &Tally, command: &str, uptime_s: f64) -> Self {
        let me = std::process::id();
        let c = &st.counters;
        View {
            pid: me,
            command: command.to_string(),
            uptime_s,
            // Relaxed: display counters (see Tally::finished).
            documents_ok: tally.documents_ok.load(Ordering::Relaxed),
            documents_failed: tally.documents_failed.load(Ordering::Relaxed),
            pages: tally.pages.load(Ordering::Relaxed),
            queue_depth: st.pending,
            in_flight: st.in_flight,
            agents: st
                .agents
                .iter()
                .map(|a| AgentView {
                    slot: a.slot,
                    pid: a.pid,
                    phase: a.phase.to_string(),
                    reported: a.reported.to_string(),
                    rss_kib: if a.pid == 0 {
                        0
                    } else {
                        procfs::rss_kib(a.pid).map_or(0, |r| r.0)
                    },
                    tasks_done: a.completed,
                    restarts: a.restarts,
                    heartbeat_age_ms: a.heartbeat_age_ms,
                    current_task: a.current_task.map(|t| (t.id, t.kind, t.running_ms)),
                    in_flight: a.in_flight,
                })
                .collect(),
            deaths: c.deaths.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            agent_restarts: c.agent_restarts,
            tasks_retried: c.tasks_retried,
            tasks_by_kind: c.by_kind.clone(),
            slab_buffers: st.slab_buffers,
            slab_in_use: st.slab_buffers.saturating_sub(st.slab_free),
            supervisor_cpu_seconds: procfs::cpu_seconds(me).unwrap_or(0.0),
            supervisor_rss_kib: procfs::rss_kib(me).map_or(0, |r| r.0),
            throughput: Vec::new(),
            jobs: BTreeMap::new(),
        }
    }

    /// Tasks ended, all kinds.
    pub fn tasks_ended(&self) -> u64 {
        self.tasks_by_kind
            .values()
            .map(|k| k.completed + k.failed)
            .sum()
    }

    /// Agents by phase.
    pub fn agents_by_phase(&self) -> BTreeMap<&str, u64> {
        let mut m = BTreeMap::new();
        for a in &self.agents {
            *m.entry(a.phase.as_str()).or_insert(0) += 1;
        }
        m
    }
}
