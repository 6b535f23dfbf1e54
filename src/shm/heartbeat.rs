//! Heartbeat words: one cache line per agent slot, through which the supervisor tells a live
//! agent from a hung one and from the ghost of an earlier incarnation.
//!
//! The agent publishes `(epoch << 32) | counter` as one 64-bit store, so that a reader never
//! sees a counter from one incarnation paired with the epoch of another. The supervisor does
//! not trust the agent's clock: staleness is measured by the supervisor itself, from when it
//! last *observed* the word change ([`Observer`]). A hung agent cannot fake progress, and a
//! misbehaving one can at worst look alive while it keeps writing, which is what "alive"
//! means.
//!
//! ```
//! use neuralflow_swarm::heartbeat::{HeartbeatWord, Liveness, Observer};
//! use std::time::{Duration, Instant};
//!
//! let word = HeartbeatWord::default();
//! let t0 = Instant::now();
//! let mut obs = Observer::new(7, t0);           // supervisor spawned epoch 7
//! word.begin(7, std::process::id());            // the agent starts
//! word.beat();
//! assert_eq!(obs.observe(&word, t0), Liveness::Alive);
//! let later = t0 + Duration::from_millis(250);
//! assert_eq!(obs.observe(&word, later), Liveness::Stale(Duration::from_millis(250)));
//! ```

use crate::shm::sync::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the agent says it is doing (informational; never trusted for decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AgentState {
    /// Slot unused or agent not yet started.
    Empty = 0,
    /// Started, validating the segment.
    Starting = 1,
    /// Waiting for work.
    Idle = 2,
    /// Running a task.
    Busy = 3,
    /// Shutting down cleanly.
    Exiting = 4,
    /// Running a task whose output waits for room in the page-buffer slab.
    WaitingForRoom = 5,
}

impl AgentState {
    /// Decodes a state word; unknown values are `None`.
    pub fn from_word(w: u32) -> Option<Self> {
        Some(match w {
            0 => Self::Empty,
            1 => Self::Starting,
            2 => Self::Idle,
            3 => Self::Busy,
            4 => Self::Exiting,
            5 => Self::WaitingForRoom,
            _ => return None,
        })
    }
}

/// One agent slot's heartbeat line. Zeroed memory is an empty slot.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct HeartbeatWord {
    /// `(epoch << 32) | counter`, written by the agent.
    beat: AtomicU64,
    /// [`AgentState`] as a word, written by the agent.
    state: AtomicU32,
    /// The agent's pid as it reports it (informational).
    pid: AtomicU32,
    /// Tasks the agent says it has finished (informational).
    tasks_done: AtomicU64,
    /// The task the agent says it is running, or `u64::MAX` (used to attribute a death to a
    /// task; validated against the supervisor's own in-flight list).
    current_task: AtomicU64,
    /// The attempt of `current_task`.
    current_attempt: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<HeartbeatWord>() == 64);

impl HeartbeatWord {
    /// Agent side: announce a new incarnation.
    pub fn begin(&self, epoch: u32, pid: u32) {
        self.set_current(None);
        // Relaxed (all three): heartbeat words carry no data that other memory depends on;
        // each is read on its own.
        self.pid.store(pid, Ordering::Relaxed);
        self.state
            .store(AgentState::Starting as u32, Ordering::Relaxed);
        self.beat.store((epoch as u64) << 32, Ordering::Relaxed);
    }

    /// Agent side: one beat. Cheap enough for every task. Several threads of the agent
    /// may beat (its liveness thread, a handler); each beat is one atomic update of the
    /// counter half, so none is lost and the epoch half never changes.
    #[inline]
    pub fn beat(&self) {
        // Relaxed (both): only this agent's threads write the word, and the update is one
        // atomic read-modify-write; readers compare values, nothing more.
        let _ = self
            .beat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some((v & 0xFFFF_FFFF_0000_0000) | ((v as u32).wrapping_add(1) as u64))
            });
    }

    /// Agent side: report the state.
    #[inline]
    pub fn set_state(&self, state: AgentState) {
        // Relaxed: informational.
        self.state.store(state as u32, Ordering::Relaxed);
    }

    /// Agent side: count a finished task.
    #[inline]
    pub fn task_done(&self) {
        // Relaxed: informational counter, single writer.
        let n = self.tasks_done.load(Ordering::Relaxed);
        // Relaxed: as above.
        self.tasks_done.store(n + 1, Ordering::Relaxed);
    }

    /// Agent side: report the task now running (`None` when between tasks).
    #[inline]
    pub fn set_current(&self, task: Option<(u64, u32)>) {
        let (id, attempt) = task.unwrap_or((u64::MAX, 0));
        // Relaxed: informational; the supervisor validates it against its own records.
        self.current_attempt.store(attempt, Ordering::Relaxed);
        self.current_task.store(id, Ordering::Relaxed);
    }

    /// The task the agent reports as running.
    pub fn current(&self) -> Option<(u64, u32)> {
        // Relaxed: informational.
        let id = self.current_task.load(Ordering::Relaxed);
        (id != u64::MAX).then(|| (id, self.current_attempt.load(Ordering::Relaxed)))
    }

    /// Supervisor side: clear the slot before a new incarnation starts.
    pub fn reset(&self) {
        // Relaxed: the slot's agent is dead; the next one starts after this, ordered by
        // process creation.
        self.beat.store(0, Ordering::Relaxed);
        self.state
            .store(AgentState::Empty as u32, Ordering::Relaxed);
        self.pid.store(0, Ordering::Relaxed);
        self.tasks_done.store(0, Ordering::Relaxed);
        self.current_task.store(u64::MAX, Ordering::Relaxed);
    }

    /// The raw beat word: `(epoch << 32) | counter`.
    pub fn raw(&self) -> u64 {
        // Relaxed: compared, not used to read other memory.
        self.beat.load(Ordering::Relaxed)
    }

    /// The state the agent reports, if it is a known value.
    pub fn state(&self) -> Option<AgentState> {
        // Relaxed: informational.
        AgentState::from_word(self.state.load(Ordering::Relaxed))
    }

    /// The pid the agent reports.
    pub fn reported_pid(&self) -> u32 {
        // Relaxed: informational.
        self.pid.load(Ordering::Relaxed)
    }

    /// Tasks the agent reports as done.
    pub fn tasks_done(&self) -> u64 {
        // Relaxed: informational.
        self.tasks_done.load(Ordering::Relaxed)
    }
}

/// The supervisor's verdict on one heartbeat word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The word changed at the latest observation.
    Alive,
    /// The word has not changed for this long (as measured by the supervisor).
    Stale(Duration),
    /// The word belongs to another incarnation of the slot (the expected one has not written
    /// yet, or a ghost wrote).
    OtherIncarnation {
        /// The epoch found in the word.
        found: u32,
    },
}

/// Supervisor-side memory of one heartbeat word: what it last saw and when it changed.
#[derive(Debug, Clone)]
pub struct Observer {
    epoch: u32,
    last: u64,
    changed_at: Instant,
}

impl Observer {
    /// Starts watching a slot whose agent was spawned with `epoch` at `now`.
    pub fn new(epoch: u32, now: Instant) -> Self {
        Self {
            epoch,
            last: u64::MAX,
            changed_at: now,
        }
    }

    /// The epoch this observer expects.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Reads the word at `now` and judges it.
    pub fn observe(&mut self, word: &HeartbeatWord, now: Instant) -> Liveness {
        let raw = word.raw();
        let found = (raw >> 32) as u32;
        if found != self.epoch {
            return Liveness::OtherIncarnation { found };
        }
        if raw != self.last {
            self.last = raw;
            self.changed_at = now;
            return Liveness::Alive;
        }
        Liveness::Stale(now.saturating_duration_since(self.changed_at))
    }

    /// Time since the word was last seen to change (or since the spawn, if never).
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.changed_at)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn previous_incarnation_is_recognised() {
        let w = HeartbeatWord::default();
        w.begin(1, 10);
        w.beat();
        let t = Instant::now();
        let mut obs = Observer::new(2, t);
        assert_eq!(obs.observe(&w, t), Liveness::OtherIncarnation { found: 1 });
        w.begin(2, 11);
        assert_eq!(obs.observe(&w, t), Liveness::Alive);
    }

    #[test]
    fn counter_wraps_without_touching_epoch() {
        let w = HeartbeatWord::default();
        w.begin(5, 1);
        w.beat
            .store((5u64 << 32) | u32::MAX as u64, Ordering::Relaxed);
        w.beat();
        assert_eq!(w.raw(), 5u64 << 32);
    }
}
