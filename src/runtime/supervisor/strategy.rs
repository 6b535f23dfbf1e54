//! Scheduling strategies: which agent a pending task goes to.
//!
//! The supervisor finds the agents that could take a task (ready, serving its kind, not
//! excluded by its spread group), says which have room in their queue now, and asks the
//! strategy to pick one; a pick without room, or none, makes the task wait (and the
//! tasks behind it, for this round). Built in:
//!
//! - [`Scheduling::LeastLoaded`] (the default): the agent with the fewest tasks queued,
//!   ties to the lowest slot, so a trickle keeps one agent hot. It runs as a batch per
//!   agent, the fastest path.
//! - [`Scheduling::RoundRobin`]: each agent in turn, strictly: a task waits for the agent
//!   whose turn it is (an agent not ready loses its turn), so each gets an equal share
//!   whatever its speed.
//! - [`Scheduling::Adaptive`]: an expected completion time for each candidate with room,
//!   from a moving average of that agent's run time for the task's kind (a new pair
//!   starts from the kind's average over all agents) times the tasks it has queued plus
//!   one; the earliest wins. Past eight candidates, two drawn at random are compared
//!   instead (power of two choices: near the best pick's balance without every task
//!   scanning every agent).
//! - [`Scheduling::Custom`]: a [`Strategy`] of the caller's.

use crate::runtime::task::TaskKind;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// An agent that could take the task, as a strategy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its slot.
    pub slot: u32,
    /// Tasks queued on it or running, including those picked in this round.
    pub queued: usize,
    /// Whether its queue has room now.
    pub room: bool,
}

/// Picks the agent for each task.
pub trait Strategy: Send {
    /// Picks one of `candidates` (never empty, in slot order) for a task of `kind`: an
    /// index into it. `None`, or a candidate without room, makes the task wait.
    fn pick(&mut self, kind: TaskKind, candidates: &[Candidate]) -> Option<usize>;

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
    fn pick(&mut self, _: TaskKind, candidates: &[Candidate]) -> Option<usize> {
        // The first candidate at or after the slot whose turn it is, wrapping round. Its
        // turn passes only when it takes the task.
        let k = candidates
            .iter()
            .position(|c| c.slot >= self.next)
            .unwrap_or(0);
        if candidates[k].room {
            self.next = candidates[k].slot + 1;
        }
        Some(k)
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
    fn pick(&mut self, kind: TaskKind, candidates: &[Candidate]) -> Option<usize> {
        let k = kind.get();
        let open: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].room)
            .collect();
        let better = |s: &Self, a: usize, b: usize| {
            if s.expected(k, &candidates[b]) < s.expected(k, &candidates[a]) {
                b
            } else {
                a
            }
        };
        match open.len() {
            0 => None,
            1..=8 => open.iter().copied().reduce(|a, b| better(self, a, b)),
            n => {
                let n = n as u64;
                let a = (self.next() % n) as usize;
                let mut b = (self.next() % (n - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                Some(better(self, open[a], open[b]))
            }
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
        Candidate {
            slot,
            queued,
            room: true,
        }
    }

    #[test]
    fn round_robin_takes_each_agent_in_turn() {
        let mut r = RoundRobin::default();
        let all = [c(0, 0), c(1, 5), c(2, 9)];
        let picks: Vec<u32> = (0..6)
            .map(|_| all[r.pick(TaskKind(1), &all).unwrap()].slot)
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // An agent not ready (not a candidate) loses its turn.
        let some = [c(0, 0), c(2, 0)];
        assert_eq!(some[r.pick(TaskKind(1), &some).unwrap()].slot, 0);
        assert_eq!(some[r.pick(TaskKind(1), &some).unwrap()].slot, 2);
        // One without room keeps its turn: the task waits for it.
        let mut r = RoundRobin::default();
        assert_eq!(r.pick(TaskKind(1), &all), Some(0));
        let full = [
            c(0, 0),
            Candidate {
                room: false,
                ..c(1, 64)
            },
            c(2, 0),
        ];
        assert_eq!(r.pick(TaskKind(1), &full), Some(1));
        assert_eq!(r.pick(TaskKind(1), &full), Some(1));
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
            queued[cands[a.pick(kind, &cands).unwrap()].slot as usize] += 1;
        }
        assert!(queued[0] < 30 && queued[1] > 70, "{queued:?}");
        // Without room anywhere, the task waits.
        let none = [Candidate {
            room: false,
            ..c(0, 9)
        }];
        assert_eq!(a.pick(kind, &none), None);
    }
}
