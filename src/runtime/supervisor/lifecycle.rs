//! Starting a supervisor and stopping it.

use super::config::{CgroupMode, Shutdown, SupervisorBuilder};
use super::error::Error;
use super::reactor::reactor_loop;
use super::reaper::{Reaper, Waker};
use super::snapshot::Counters;
use super::state::{Agent, Phase, Shared, State};
use super::Supervisor;
use crate::runtime::cgroup::{self, CgroupManager, Hierarchy};
use crate::runtime::sandbox::{SandboxError, SandboxPolicy};
use crate::runtime::task::DeathCause;
use crate::shm::descriptor::Descriptor;
use crate::shm::heartbeat::Observer;
use crate::shm::segment::{Direction, Segment};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Supervisor {
    pub(super) fn start(mut cfg: SupervisorBuilder) -> Result<Supervisor, Error> {
        if std::env::var_os(crate::runtime::agent::PROBE_ENV).is_some() {
            return Err(Error::StartedAsAgent);
        }
        cfg.segment.agent_slots = cfg.agents;
        cfg.segment.topics = (crate::runtime::bus::RUNTIME_TOPICS.len() + cfg.topics.len()) as u32;
        cfg.segment.agent_buffers = cfg
            .agent_buffers
            .unwrap_or((cfg.segment.buffer_count / 2).max(1));
        let began = Instant::now();
        // A wrong agent executable is found here, before anything is created, and not as
        // a crash loop after the fact.
        let agent_bin = cfg
            .agent_bin
            .clone()
            .unwrap_or_else(crate::runtime::spawn::default_agent_bin);
        let bad_agent = |problem| Error::AgentBinary {
            path: agent_bin.clone(),
            problem,
        };
        // Its answer is read once the segment and the cgroups are made, which it overlaps.
        let probe =
            super::probe::start(&agent_bin, cfg.probe_timeout, &cfg.sandbox).map_err(bad_agent)?;
        let mut warnings = Vec::new();
        // The page buffers are reserved while the agents start (no buffer is lent before
        // `start` returns).
        let (seg, reservation) = Segment::create_deferred(cfg.segment)?;
        tracing::debug!(bytes = seg.layout().total_size, took = ?began.elapsed(), "segment created");
        let bus = Arc::new(Mutex::new(super::bus::Topics::new(&seg, &cfg.topics)?));
        let store = Arc::new(Mutex::new(super::shared_state::Store::new(&seg)));
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
                        let msg = format!("running agents without cgroup isolation: {e}");
                        tracing::warn!("{msg}");
                        warnings.push(msg);
                        None
                    }
                }
            }
        };
        let (served, sandbox) = match probe.finish() {
            Ok(answer) => answer,
            Err(problem) => {
                if let Some(m) = &cgroups {
                    m.remove();
                }
                return Err(bad_agent(problem));
            }
        };
        for (measure, why) in sandbox.unavailable() {
            if cfg.sandbox.require {
                if let Some(m) = &cgroups {
                    m.remove();
                }
                return Err(Error::Sandbox(SandboxError {
                    measure,
                    why: why.to_string(),
                }));
            }
            let msg = format!(
                "agents run without sandbox measure {}: {why}",
                measure.name()
            );
            tracing::warn!("{msg}");
            warnings.push(msg);
        }
        // Agents apply what held in the probe, and must: one that cannot does not start.
        let agent_sandbox = SandboxPolicy {
            measures: sandbox.on(),
            read_paths: cfg.sandbox.read_paths.clone(),
            require: true,
        };
        tracing::debug!(took = ?began.elapsed(), ?served, "agent executable probed");
        let (parent_read, parent_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::Os("pipe", e.into()))?;
        let (exit_tx, exits) = crossbeam_channel::unbounded();
        let waker = Waker {
            seg: seg.clone(),
            reactor: Arc::new(Mutex::new(None)),
        };
        let reaper = Reaper::start(exit_tx, waker.clone())?;
        let now = Instant::now();
        let class_of: Vec<Option<Arc<[u32]>>> = cfg
            .classes
            .iter()
            .flat_map(|c| {
                let kinds: Option<Arc<[u32]>> = c
                    .kinds
                    .as_ref()
                    .map(|k| k.iter().map(|k| k.get()).collect());
                std::iter::repeat_n(kinds, c.count as usize)
            })
            .collect();
        let limits_of: Vec<Option<crate::runtime::cgroup::Limits>> = cfg
            .classes
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.limits, c.count as usize))
            .collect();
        let agents = (0..cfg.agents)
            .map(|slot| Agent {
                kinds: class_of.get(slot as usize).cloned().flatten(),
                limits: limits_of.get(slot as usize).copied().flatten(),
                slot,
                epoch: 0,
                child: None,
                pid: 0,
                cgroup: None,
                tx: None,
                rx: None,
                observer: Observer::new(0, now),
                // An elastic pool starts with its minimum; the other slots wait, parked.
                phase: if slot < cfg.elastic.map_or(cfg.agents, |(min, _)| min) {
                    Phase::Dead
                } else {
                    Phase::Parked
                },
                in_flight: VecDeque::new(),
                kill_reason: None,
                idle_since: None,
                scaled: false,
                current: None,
                consecutive_failures: 0,
                restarts: 0,
                completed: 0,
                waiting_for_room: None,
                progress: None,
            })
            .collect();
        let state = State {
            agents,
            tasks: HashMap::new(),
            pending: Default::default(),
            started: Instant::now(),
            spread: HashMap::new(),
            strategy: cfg.scheduling.make(),
            last_scale_up: None,
            split_budget: HashMap::new(),
            sources: Default::default(),
            sources_running: 0,
            edge_bytes: 0,
            bus: bus.clone(),
            store: store.clone(),
            cache: super::cache::Cache::new(
                cfg.cache
                    .map(|(entries, bytes)| super::cache::CacheLimits {
                        entries: entries.max(1),
                        buffers: (bytes / u64::from(cfg.segment.buffer_size).max(1)) as usize,
                    })
                    .or(Some(super::cache::CacheLimits {
                        entries: 1024,
                        buffers: cfg.segment.buffer_count as usize / 8,
                    })),
            ),
            seg: seg.clone(),
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
            last_sweep: now,
            rng: now.elapsed().as_nanos() as u64
                ^ u64::from(std::process::id())
                ^ 0x9E37_79B9_7F4A_7C15,
            scratch: Vec::with_capacity(256),
            order: Vec::new(),
            held: HashMap::new(),
            next_held: 1,
            warned: warnings.iter().cloned().collect(),
            warnings,
            sets: HashMap::new(),
            abandoned: Default::default(),
            open_stream: 0,
            owner: std::sync::Weak::<Shared>::new(),
            next_set: 0,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            bus,
            store,
            state_reader: super::shared_state::reader(&seg),
            cv: Condvar::new(),
            seg,
            cfg,
            agent_bin,
            served,
            sandbox,
            agent_sandbox,
            drivers: AtomicUsize::new(0),
            doorbell_owner: Mutex::new(()),
            stop: AtomicBool::new(false),
            waker,
            exits,
            reaper,
            parent_read,
            _parent_write: parent_write,
        });
        {
            let mut st = shared.state.lock();
            let weak: std::sync::Weak<Shared> = Arc::downgrade(&shared);
            st.owner = weak;
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

    pub(super) fn stop(&mut self, mode: Shutdown) -> Result<Counters, Error> {
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
            st.tell_agents(crate::runtime::bus::Control::Shutdown);
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
                    let _ = tx.push(Descriptor::new(
                        0,
                        0,
                        crate::runtime::task::kinds::STOP.get(),
                    ));
                }
                if let Ok(h) = sh.seg.ring_sides(a.slot, Direction::ToAgent) {
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
            None => Ok(st.counters()),
        }
    }
}
