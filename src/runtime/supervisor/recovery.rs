//! Health and recovery: hangs, timeouts, deaths and their causes, blame and quarantine,
//! the crash-loop limit, cancellation of what is left.

use super::state::{InFlight, Phase, RoomWait, Shared, State};
use super::stored::Stored;
use crate::runtime::task::{DeathCause, Failure, Outcome};
use crate::shm::heartbeat::{AgentState, Liveness};
use crate::shm::segment::Direction;
use crate::shm::slab::Owner;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

impl State {
    pub(super) fn health(&mut self, sh: &Shared, now: Instant) {
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
                    match (a.reported_task(hb), a.current) {
                        (Some(id), Some((cur, _))) if id == cur => {}
                        (Some(id), _) => a.current = Some((id, now)),
                        (None, _) => a.current = None,
                    }
                    // An agent waits for room only in its own pool, which the supervisor
                    // empties as it takes the agent's completions: the wait is shown, but
                    // it is the task's time (the pool is the agent's to fill). The state
                    // is the agent's word, so it counts only while its pool is in use.
                    let me = Owner::Agent(a.slot);
                    let short = self.slab.free_in(me) < self.slab.capacity(me) as usize;
                    let waiting = short && hb.state() == Some(AgentState::WaitingForRoom);
                    self.watch_room(i, waiting, now);
                    if let Some((id, started)) = self.agents[i].current {
                        let limit = self.tasks.get(&id).and_then(|t| {
                            t.timeout
                                .or_else(|| sh.cfg.kind_timeouts.get(&t.kind).copied())
                                .or(sh.cfg.task_timeout)
                        });
                        if limit.is_some_and(|l| now.duration_since(started) > l) {
                            self.kill(i, DeathCause::Timeout);
                            continue;
                        }
                    }
                }
                Phase::Backoff(until) if now >= until => self.spawn(sh, i as u32),
                Phase::Dead => self.spawn(sh, i as u32),
                _ => {}
            }
        }
        if let Some((min, _)) = sh.cfg.elastic {
            self.scale(sh, min, now);
        }
    }

    /// An elastic pool's decision at a health check: grow, when the oldest pending task has
    /// waited past `scale_up_after`, by as many agents as the queue would fill beyond those
    /// already starting (as many as are parked, at most); or retire one agent idle past
    /// `retire_after`, when more than
    /// `min` run and the pool has not grown within that time either (no spawn-retire
    /// thrash). Only an idle agent retires, so nothing it had is lost.
    fn scale(&mut self, sh: &Shared, min: u32, now: Instant) {
        let depth = sh.cfg.queue_depth.max(1) as usize;
        let starting = self
            .agents
            .iter()
            .filter(|a| {
                matches!(
                    a.phase,
                    Phase::Starting(_) | Phase::Dead | Phase::Backoff(_)
                )
            })
            .count();
        let waited = self
            .pending
            .front()
            .and_then(|id| self.tasks.get(&id))
            .map(|t| Duration::from_nanos(self.now_ns().saturating_sub(t.submitted_ns)));
        let wanted = self.pending.len().div_ceil(depth).saturating_sub(starting);
        if waited.is_some_and(|w| w >= sh.cfg.scale_up_after) && wanted > 0 {
            let parked: Vec<usize> = (0..self.agents.len())
                .filter(|&i| self.agents[i].phase == Phase::Parked)
                .take(wanted)
                .collect();
            for i in parked {
                let a = &mut self.agents[i];
                a.phase = Phase::Dead;
                a.scaled = true;
                self.counters.agents_added += 1;
                self.last_scale_up = Some(now);
                tracing::debug!(slot = a.slot, waited = ?waited, "pool grows");
                self.spawn(sh, i as u32);
            }
            return;
        }
        let running = self.agents.iter().filter(|a| a.phase.is_running()).count();
        for a in &mut self.agents {
            if a.phase != Phase::Ready || !a.in_flight.is_empty() {
                a.idle_since = None;
            } else if a.idle_since.is_none() {
                a.idle_since = Some(now);
            }
        }
        let calm = self
            .last_scale_up
            .is_none_or(|t| now.duration_since(t) >= sh.cfg.retire_after);
        if running as u32 <= min || !calm || !self.pending.is_empty() {
            return;
        }
        // The highest slot idle long enough goes first, so the pool shrinks from the top.
        let idle = self.agents.iter().rposition(|a| {
            a.idle_since
                .is_some_and(|t| now.duration_since(t) >= sh.cfg.retire_after)
        });
        if let Some(i) = idle {
            tracing::debug!(slot = self.agents[i].slot, "pool shrinks");
            self.agents[i].phase = Phase::Retiring;
            self.kill(i, DeathCause::Supervisor);
        }
    }

    /// Moves a starting agent to ready once its heartbeat line says so for its epoch.
    pub(super) fn check_ready(&mut self, sh: &Shared, i: usize, now: Instant) -> bool {
        let a = &mut self.agents[i];
        let Ok(hb) = sh.seg.heartbeat(a.slot) else {
            return false;
        };
        let mine = (hb.raw() >> 32) as u32 == a.epoch;
        if mine
            && matches!(
                hb.state(),
                Some(AgentState::Idle | AgentState::Busy | AgentState::WaitingForRoom)
            )
        {
            if let Phase::Starting(since) = a.phase {
                tracing::debug!(slot = a.slot, epoch = a.epoch, startup = ?now.duration_since(since), "agent ready");
            }
            a.phase = Phase::Ready;
            a.observer.observe(hb, now);
            return true;
        }
        false
    }

    /// Makes an agent held up by a full pool visible: counted once per episode, and
    /// reported after a second.
    fn watch_room(&mut self, i: usize, waiting: bool, now: Instant) {
        let slot = self.agents[i].slot;
        let a = &mut self.agents[i];
        match (a.waiting_for_room, waiting) {
            (None, true) => {
                a.waiting_for_room = Some(RoomWait {
                    since: now,
                    reported: false,
                });
                self.counters.slab_waits += 1;
            }
            (Some(w), true)
                if !w.reported && now.duration_since(w.since) > Duration::from_secs(1) =>
            {
                let since = w.since;
                a.waiting_for_room = Some(RoomWait {
                    reported: true,
                    ..w
                });
                let me = Owner::Agent(slot);
                let msg = format!(
                    "slot {slot} has waited {:?} for room in its page-buffer pool for a task's \
                     output: {} of its {} buffers free, the rest holding outputs it has not \
                     handed over",
                    now.duration_since(since),
                    self.slab.free_in(me),
                    self.slab.capacity(me),
                );
                tracing::warn!("{msg}");
            }
            (Some(_), true) => {}
            (Some(_), false) => a.waiting_for_room = None,
            (None, false) => {}
        }
    }

    /// One rule for a ring whose counters do not check out, whichever side finds it: the
    /// agent broke the protocol (only it can write its side of its rings) and is killed;
    /// the task it was running is blamed (see [`DeathCause::blames_task`]), the rest are
    /// requeued, and a new incarnation gets fresh rings.
    pub(super) fn ring_fault(
        &mut self,
        i: usize,
        dir: Direction,
        e: crate::shm::ring::RingCorrupt,
    ) {
        tracing::warn!(slot = self.agents[i].slot, ?dir, "ring corrupt: {e}");
        self.kill(i, DeathCause::Protocol);
        // Nothing more goes through its rings; the replacement gets fresh ones.
        self.agents[i].tx = None;
        self.agents[i].rx = None;
    }

    /// Frees page buffers the ledger records against no one who can free them: an agent
    /// can write every ledger word (the slab is still shared), and a word it sets to a
    /// slot that does not exist, or to the supervisor for a buffer the supervisor does not
    /// hold, would otherwise keep that buffer for ever and, with enough of them, stall
    /// every task that needs room. Words naming a real agent are freed when it dies.
    pub(super) fn sweep_ledger(&mut self) {
        let mut mine = std::collections::HashSet::new();
        let waiting = self
            .tasks
            .values()
            .filter_map(|t| t.waiting.as_ref())
            .flat_map(|w| w.slots.iter().flatten().map(|s| &**s));
        let chains = self
            .held
            .values()
            .chain(
                self.tasks
                    .values()
                    .flat_map(|t| t.inputs.iter().map(|s| &**s)),
            )
            .chain(waiting);
        for stored in chains {
            if let Stored::Chain { handles, .. } = stored {
                mine.extend(handles.iter().map(|h| h.index));
            }
        }
        for t in self.tasks.values() {
            if let Some((_, handles)) = &t.lent {
                mine.extend(handles.iter().map(|h| h.index));
            }
        }
        mine.extend(self.cache.held_buffers());
        // The bus allocates under its own lock: held across the sweep, so that a message
        // published meanwhile is not taken for a stray.
        let bus = self.bus.lock();
        mine.extend(bus.held_buffers());
        let freed = self
            .slab
            .sweep(self.agents.len() as u32, |index| mine.contains(&index));
        drop(bus);
        if freed > 0 {
            tracing::warn!(
                freed,
                "freed page buffers whose ledger words were written over"
            );
        }
    }

    /// Kills an agent, remembering why.
    pub(super) fn kill(&mut self, i: usize, why: DeathCause) {
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

    pub(super) fn on_exit(&mut self, sh: &Shared, i: usize) {
        let slot = self.agents[i].slot;
        let Some(mut child) = self.agents[i].child.take() else {
            return;
        };
        if self.stopping {
            // `stop` waits for the last agent to go: tell it at once.
            sh.notify_waiters();
        }
        let st = child.wait().ok();
        let oom = self.agents[i]
            .cgroup
            .as_ref()
            .is_some_and(|g| g.oom_kills() > 0);
        let cause = match (self.agents[i].kill_reason.take(), st) {
            (Some(c), _) => c,
            (None, Some(s)) if s.signal() == Some(libc::SIGKILL) && oom => DeathCause::Oom,
            // The seccomp filter kills with SIGSYS.
            (None, Some(s)) if s.signal() == Some(libc::SIGSYS) => DeathCause::Sandbox,
            (None, Some(s)) if s.signal().is_some() => DeathCause::Signal(s.signal().unwrap_or(0)),
            (None, Some(s)) => DeathCause::Exit(s.code().unwrap_or(-1)),
            (None, None) => DeathCause::Exit(-1),
        };
        let was_ready = self.agents[i].phase == Phase::Ready;
        let retiring = self.agents[i].phase == Phase::Retiring;
        if !self.stopping && !retiring {
            *self.counters.deaths.entry(cause.bucket()).or_insert(0) += 1;
            tracing::info!(slot, pid = self.agents[i].pid, %cause, "agent died");
        }
        // Completions it published before dying are real results.
        self.take_completions(i);
        self.cache_agent_gone(slot);
        let culprit = if cause.blames_task() {
            let a = &self.agents[i];
            let hb = sh.seg.heartbeat(slot).ok();
            let reported = hb.and_then(|hb| a.reported_task(hb));
            // The agent's word for what it ran is taken only when it names one of its own
            // tasks; a word naming anything else is a lie (or scribbled over). Without a
            // word to take, the culprit is plain only when the agent held one task: with
            // several, none is struck, and they all become suspects, each to run alone
            // (see `TaskRecord::suspect`), so that the next death names its task. An exit
            // with no task named is the agent's own doing (its errors clear the word).
            let lied = reported.is_none() && hb.is_some_and(|hb| hb.current().is_some());
            let only = (a.in_flight.len() == 1).then(|| a.in_flight.front().map(|f| f.id));
            match (cause, reported, only.flatten()) {
                (_, Some(id), _) => Some(id),
                (DeathCause::Exit(_), None, _) if !lied => None,
                (_, None, Some(id)) => Some(id),
                (_, None, None) => {
                    let ids: Vec<u64> = a.in_flight.iter().map(|f| f.id).collect();
                    for id in ids {
                        if let Some(t) = self.tasks.get_mut(&id) {
                            t.suspect = true;
                        }
                    }
                    None
                }
            }
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
            if rec.attempt > sh.cfg.max_attempts {
                let deaths = rec.attempt - 1;
                self.finish(
                    f.id,
                    Outcome::Failed(Failure::Abandoned {
                        deaths,
                        last: cause,
                    }),
                );
                continue;
            }
            self.pending.push_front(f.id);
        }
        let a = &mut self.agents[i];
        a.current = None;
        a.waiting_for_room = None;
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
        if retiring {
            a.phase = Phase::Parked;
            a.idle_since = None;
            self.counters.agents_retired += 1;
            // Anything given to it between the decision and its exit went back above.
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

    pub(super) fn fail_fatal(&mut self, msg: String) {
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

    pub(super) fn cancel_all(&mut self, why: &str) {
        let ids: Vec<u64> = self.tasks.keys().copied().collect();
        for id in ids {
            self.finish(id, Outcome::Failed(Failure::Cancelled(why.to_string())));
        }
        self.pending.clear();
        self.sources.clear();
        for a in &mut self.agents {
            a.in_flight.clear();
        }
    }

    /// Records an agent that never became ready: backs its slot off exponentially with
    /// jitter, or stops the supervisor once the crash-loop intensity is exceeded.
    pub(super) fn startup_failure(&mut self, sh: &Shared, i: usize, why: String) {
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
