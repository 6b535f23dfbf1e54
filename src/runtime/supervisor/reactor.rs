//! Driving the supervisor: the reactor thread, callers that drive while they wait, and
//! the waker that reaches the reactor wherever it sleeps.

use super::state::{Phase, Shared, State};
use crate::shm::segment::Direction;
use parking_lot::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Shared {
    /// Drives until `take` yields, spinning briefly first, then sleeping where the next
    /// event rings: on the doorbell itself when the reactor is not on it (agents' replies
    /// then wake this caller, not the reactor and then this caller), else on the condition
    /// variable the reactor signals.
    ///
    /// A caller stays a driver for the whole wait, so the reactor keeps off the doorbell
    /// meanwhile (it wakes on its tick, for whatever a caller busy elsewhere leaves).
    pub(super) fn wait_for<T>(
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
            let until = deadline.map_or(now + tick, |d| d.min(now + tick));
            match self.doorbell_owner.try_lock() {
                Some(_owner) => MutexGuard::unlocked(&mut st, || {
                    self.sleep_on_doorbell(until.saturating_duration_since(now));
                }),
                None => {
                    self.cv.wait_until(&mut st, until);
                }
            }
        };
        self.drivers.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Sleeps on the doorbell for at most `timeout`, unless replies or exits wait already.
    /// The caller holds `doorbell_owner` (the doorbell has one sleeper at a time).
    fn sleep_on_doorbell(&self, timeout: Duration) {
        let doorbell = self.seg.doorbell();
        let token = doorbell.prepare();
        let busy = {
            let st = self.state.lock();
            st.agents.iter().any(|a| {
                self.seg
                    .ring_sides(a.slot, Direction::FromAgent)
                    .map(|h| !matches!(h.is_empty(), Ok(true)))
                    .unwrap_or(false)
            }) || !self.exits.is_empty()
        };
        if !busy && !self.stop.load(Ordering::Relaxed) {
            doorbell.sleep(token, Some(timeout));
        }
        doorbell.finish();
    }

    /// Tells callers waiting in [`Shared::wait_for`] to look again, wherever they sleep.
    pub(super) fn notify_waiters(&self) {
        self.cv.notify_all();
        self.seg.doorbell().wake();
    }

    pub(super) fn wake_reactor(&self) {
        self.waker.wake();
    }
}

pub(super) fn reactor_loop(sh: &Shared) {
    let tick = (sh.cfg.heartbeat_period / 4).max(Duration::from_millis(1));
    // Relaxed (`stop` and `drivers` here): see `Supervisor::stop` and `Shared::wait_for`.
    while !sh.stop.load(Ordering::Relaxed) {
        {
            let mut st = sh.state.lock();
            st.drive(sh);
        }
        let owner = (sh.drivers.load(Ordering::Relaxed) == 0)
            .then(|| sh.doorbell_owner.try_lock())
            .flatten();
        match owner {
            Some(_owner) if sh.drivers.load(Ordering::Relaxed) == 0 => sh.sleep_on_doorbell(tick),
            // A caller drives (and may sleep on the doorbell): come back on the tick.
            _ => std::thread::park_timeout(tick),
        }
    }
}

impl State {
    pub(super) fn has_unreported(&self) -> bool {
        !self.results.is_empty() || !self.stream.is_empty()
    }

    /// One pass: exits, completions, health, dispatch. Wakes waiters if anything ended.
    pub(super) fn drive(&mut self, sh: &Shared) {
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
            self.take_completions(i);
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
        if now.duration_since(self.last_sweep) >= Duration::from_secs(1) {
            self.last_sweep = now;
            self.sweep_ledger();
        }
        self.admit_sources(&sh.cfg.graph_flow);
        self.dispatch(sh);
        if self.counters.completed + self.counters.failed != before {
            sh.notify_waiters();
        }
    }
}
