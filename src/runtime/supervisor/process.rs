//! Agent processes: building an incarnation's launch (cgroup joined before exec), starting
//! it without copying the supervisor ([`crate::runtime::launch`]), and the reaper thread
//! that watches pidfds for exits.

use super::config::CgroupMode;
use super::state::{Phase, Shared, State};
use crate::runtime::agent::{AgentConfig, AGENT_FLAG};
use crate::runtime::launch::{Launch, Launched};
use crate::shm::heartbeat::Observer;
use crate::shm::segment::Direction;
use std::os::fd::AsRawFd;
use std::time::Instant;

impl State {
    /// Starts a new incarnation in slot `slot`.
    pub(super) fn spawn(&mut self, sh: &Shared, slot: u32) {
        if let Some(launch) = self.prepare_spawn(sh, slot) {
            let spawned = launch.spawn();
            self.spawned(sh, slot, spawned);
        }
    }

    /// Starts every slot's first incarnation. `Launch::spawn` returns once the child has
    /// joined its cgroups and exec'd; joining a cgroup can wait for an RCU grace period
    /// (milliseconds), so the agents are started side by side instead of one after another.
    pub(super) fn spawn_all(&mut self, sh: &Shared) {
        let mut cmds: Vec<(u32, Launch)> = (0..self.agents.len() as u32)
            .filter_map(|slot| self.prepare_spawn(sh, slot).map(|c| (slot, c)))
            .collect();
        let threads = cmds.len().clamp(1, 16);
        let per = cmds.len().div_ceil(threads).max(1);
        let results: Vec<(u32, std::io::Result<Launched>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = cmds
                .chunks_mut(per)
                .map(|chunk| {
                    let slots: Vec<u32> = chunk.iter().map(|(slot, _)| *slot).collect();
                    let worker = std::thread::Builder::new()
                        .name("swarm-spawn".into())
                        .spawn_scoped(scope, move || {
                            chunk
                                .iter_mut()
                                .map(|(slot, launch)| (*slot, launch.spawn()))
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
    pub(super) fn prepare_spawn(&mut self, sh: &Shared, slot: u32) -> Option<Launch> {
        if self.stopping || self.fatal.is_some() {
            return None;
        }
        let i = slot as usize;
        let a = &mut self.agents[i];
        if a.phase == Phase::Parked {
            return None;
        }
        let scaled = std::mem::take(&mut a.scaled);
        if a.epoch > 0 && !scaled {
            a.restarts += 1;
            self.counters.agent_restarts += 1;
        }
        a.epoch += 1;
        a.tx = None;
        a.rx = None;
        for dir in [Direction::ToAgent, Direction::FromAgent] {
            if let Ok(h) = sh.seg.ring_sides(slot, dir) {
                h.reset();
            }
        }
        if let Ok(hb) = sh.seg.heartbeat(slot) {
            hb.reset();
        }
        let _ = sh.seg.reset_bus_flags(slot);
        if let Ok(r) = sh.seg.state_reply(slot) {
            r.reset();
        }
        a.progress = None;
        a.tx = sh.seg.producer(slot, Direction::ToAgent).ok();
        a.rx = sh.seg.consumer(slot, Direction::FromAgent).ok();
        let now = Instant::now();
        a.observer = Observer::new(a.epoch, now);
        a.current = None;
        a.kill_reason = None;

        let fds = match sh.seg.agent_fds(slot) {
            Ok(fds) => fds,
            Err(e) => {
                self.startup_failure(sh, i, format!("no segment files for the slot: {e}"));
                return None;
            }
        };
        let config = AgentConfig {
            fds,
            slot,
            epoch: a.epoch,
            parent_fd: Some(sh.parent_read.as_raw_fd()),
            heartbeat_period: sh.cfg.heartbeat_period,
            spin: sh.cfg.agent_spin,
            sandbox: sh.agent_sandbox.clone(),
        };
        let mut args = vec![AGENT_FLAG.to_string()];
        args.extend(config.to_args());
        let mut cmd = match Launch::new(sh.agent_bin.as_os_str(), &args) {
            Ok(l) => l,
            Err(e) => {
                self.startup_failure(sh, i, format!("cannot start: {e}"));
                return None;
            }
        };
        cmd.keep_fds(&[
            fds.segment,
            fds.slot_file,
            fds.common,
            sh.parent_read.as_raw_fd(),
        ]);
        a.cgroup = None;
        let epoch = a.epoch;
        let limits = a.limits.unwrap_or(sh.cfg.limits);
        let made = self
            .cgroups
            .as_ref()
            .map(|m| m.create_agent(slot, epoch, &limits));
        if let Some(made) = made {
            match made {
                Ok(g) => {
                    cmd.join_cgroups(g.procs_files());
                    self.agents[i].cgroup = Some(g);
                }
                Err(e) if sh.cfg.cgroups == CgroupMode::Required => {
                    // No agent runs without the isolation it was promised.
                    tracing::warn!(slot, "cannot create agent cgroup: {e}");
                    *self.counters.deaths.entry("exit").or_insert(0) += 1;
                    self.startup_failure(sh, i, format!("cannot create its cgroup: {e}"));
                    return None;
                }
                Err(e) => {
                    let msg = format!("slot {slot} runs without its cgroup: {e}");
                    tracing::warn!("{msg}");
                    self.warn(format!("cgroup of slot {slot}"), msg);
                }
            }
        }
        Some(cmd)
    }

    /// Records how starting slot `slot` went.
    pub(super) fn spawned(&mut self, sh: &Shared, slot: u32, spawned: std::io::Result<Launched>) {
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
}
