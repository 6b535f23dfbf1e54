//! Scheduling strategies: which agent a pending task goes to.
//!
//! The supervisor finds the agents that can take a task now (ready, with room in their
//! queue, serving its kind, not excluded by its spread group or by a suspect's rule) and
//! asks the strategy to pick one. Built in:
//!
//! - [`Scheduling::LeastLoaded`] (the default): the agent with the fewest tasks queued,
//!   ties to the lowest slot, so a trickle keeps one agent hot. It runs as a batch per
//!   agent, the fastest path.
//! - [`Scheduling::RoundRobin`]: each agent in turn (of those with room in their queue).
//! - [`Scheduling::Adaptive`]: an expected completion time for each candidate, from a
//!   moving average of that agent's run time for the task's kind (a new pair starts from
//!   the kind's average over all agents) times the tasks it has queued plus one; two
//!   candidates drawn at random, the earlier expected completion wins (power of two
//!   choices: near the best pick's balance without every task scanning every agent).
//! - [`Scheduling::Custom`]: a [`Strategy`] of the caller's.

use crate::runtime::task::TaskKind;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// An agent that can take the task now, as a strategy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its slot.
    pub slot: u32,
    /// Tasks queued on it or running, including those picked in this round.
    pub queued: usize,
}

/// Picks the agent for each task.
pub trait Strategy: Send {
    /// Picks one of `candidates` (never empty) for a task of `kind`: an index into it.
    fn pick(&mut self, kind: TaskKind, candidates: &[Candidate]) -> usize;

    /// A task of `kind` ran for `run_time` on `slot` (as the agent measured it).
    fn observe(&mut self, slot: u32, kind: TaskKind, run_time: Duration) {
        let _ = (slot, kind, run_time);
    }
}

/// How the supervisor picks agents (see the module's documentation).
#[derive(Clone, Default)]
pub enum Scheduling {
    /// The agent with the fewest tasks queued.
    #[default]
    LeastLoaded,
    /// Each agent in turn.
    RoundRobin,
    /// The earlier expected completion of two candidates drawn at random.
    Adaptive,
    /// A strategy of the caller's, made once per supervisor.
    Custom(Arc<dyn Fn() -> Box<dyn Strategy> + Send + Sync>),
}

impl std::fmt::Debug for Scheduling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheduling::LeastLoaded => "LeastLoaded",
            Scheduling::RoundRobin => "RoundRobin",
            Scheduling::Adaptive => "Adaptive",
            Scheduling::Custom(_) => "Custom",
        })
    }
}

impl Scheduling {
    /// The strategy to run, or `None` for least-loaded's batch path.
    pub(super) fn make(&self) -> Option<Box<dyn Strategy>> {
        match self {
            Scheduling::LeastLoaded => None,
            Scheduling::RoundRobin => Some(Box::new(RoundRobin::default())),
            Scheduling::Adaptive => Some(Box::new(Adaptive::default())),
            Scheduling::Custom(make) => Some(make()),
        }
    }
}

/// Each agent in turn, by slot.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: u32,
}

impl Strategy for RoundRobin {
    fn pick(&mut self, _: TaskKind, candidates: &[Candidate]) -> usize {
        // The first candidate at or after the slot whose turn it is, wrapping round.
        let k = candidates
            .iter()
            .position(|c| c.slot >= self.next)
            .unwrap_or(0);
        self.next = candidates[k].slot + 1;
        k
    }
}

/// Expected completion from moving averages of run time per agent and kind, over two
/// random candidates.
#[derive(Debug)]
pub struct Adaptive {
    /// Moving average run time (µs) by (slot, kind).
    per_agent: HashMap<(u32, u32), f64>,
    /// Moving average run time (µs) by kind, over all agents.
    per_kind: HashMap<u32, f64>,
    rng: u64,
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            per_agent: HashMap::new(),
            per_kind: HashMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.2;

impl Adaptive {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Expected completion (µs) of a task of `kind` put on `c` now.
    fn expected(&self, kind: u32, c: &Candidate) -> f64 {
        let per_task = self
            .per_agent
            .get(&(c.slot, kind))
            .or_else(|| self.per_kind.get(&kind))
            .copied()
            .unwrap_or(1.0);
        per_task * (c.queued + 1) as f64
    }
}

impl Strategy for Adaptive {
    fn pick(&mut self, kind: TaskKind, candidates: &[Candidate]) -> usize {
        if candidates.len() == 1 {
            return 0;
        }
        let n = candidates.len() as u64;
        let a = (self.next() % n) as usize;
        let mut b = (self.next() % (n - 1)) as usize;
        if b >= a {
            b += 1;
        }
        let k = kind.get();
        if self.expected(k, &candidates[b]) < self.expected(k, &candidates[a]) {
            b
        } else {
            a
        }
    }

    fn observe(&mut self, slot: u32, kind: TaskKind, run_time: Duration) {
        let us = run_time.as_secs_f64() * 1e6;
        let k = kind.get();
        for avg in [
            self.per_agent.entry((slot, k)).or_insert(us),
            self.per_kind.entry(k).or_insert(us),
        ] {
            *avg += ALPHA * (us - *avg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(slot: u32, queued: usize) -> Candidate {
        Candidate { slot, queued }
    }

    #[test]
    fn round_robin_takes_each_agent_in_turn() {
        let mut r = RoundRobin::default();
        let all = [c(0, 0), c(1, 5), c(2, 9)];
        let picks: Vec<u32> = (0..6)
            .map(|_| all[r.pick(TaskKind(1), &all)].slot)
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // A busy agent missing from the candidates is skipped, and the turn goes on.
        let some = [c(0, 0), c(2, 0)];
        assert_eq!(some[r.pick(TaskKind(1), &some)].slot, 0);
        assert_eq!(some[r.pick(TaskKind(1), &some)].slot, 2);
    }

    /// An agent four times slower for a kind gets about a fifth of its tasks, once
    /// measured: queues grow until expected completions are even.
    #[test]
    fn adaptive_sends_fewer_tasks_to_the_slow_agent() {
        let mut a = Adaptive::default();
        let kind = TaskKind(3);
        a.observe(0, kind, Duration::from_micros(400));
        a.observe(1, kind, Duration::from_micros(100));
        let mut queued = [0usize; 2];
        for _ in 0..100 {
            let cands = [c(0, queued[0]), c(1, queued[1])];
            queued[cands[a.pick(kind, &cands)].slot as usize] += 1;
        }
        assert!(queued[0] < 30 && queued[1] > 70, "{queued:?}");
    }
}
