//! Helpers for tests that drive a supervisor: waiting for every page buffer to come back,
//! and a chaos thread that SIGKILLs agents.
#![allow(dead_code)]

use neuralflow_swarm::supervisor::{CgroupMode, Supervisor, SupervisorBuilder};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A builder of `agents` agents from this package's `agent-bin`, cgroups required when
/// `SWARM_REQUIRE_CGROUPS=1` (so that CI fails rather than runs unisolated), hangs taken
/// after 2 s of silence.
pub fn builder(agents: u32) -> SupervisorBuilder {
    let required = std::env::var("SWARM_REQUIRE_CGROUPS").is_ok_and(|v| v == "1");
    Supervisor::builder()
        .agents(agents)
        .agent_bin(env!("CARGO_BIN_EXE_agent-bin"))
        .cgroups(if required {
            CgroupMode::Required
        } else {
            CgroupMode::Auto
        })
        .hang_timeout(Duration::from_secs(2))
}

/// Builds the supervisor and waits until every agent is ready (tasks submitted before an
/// agent is up would all queue on the first ones).
pub fn ready(b: SupervisorBuilder) -> Supervisor {
    let sup = b.build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sup.status().agents.iter().any(|a| a.phase != "ready") {
        assert!(Instant::now() < deadline, "agents did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    sup
}

/// The output of a task that completed, read as JSON (a synthetic kind's report); the
/// test fails if it did not complete within a minute.
pub fn output<T: serde::de::DeserializeOwned>(h: neuralflow_swarm::supervisor::TaskHandle) -> T {
    match h
        .wait(Some(Duration::from_secs(60)))
        .expect("the task ends")
    {
        neuralflow_swarm::task::Outcome::Completed { output, .. } => {
            serde_json::from_slice(&output).expect("a JSON report")
        }
        other => panic!("{other:?}"),
    }
}

/// Drains and shuts down a supervisor that was shared with helper threads (they must have
/// let it go).
pub fn shutdown(sup: Arc<Supervisor>) {
    let Ok(sup) = Arc::try_unwrap(sup) else {
        panic!("another holder of the supervisor");
    };
    sup.shutdown(neuralflow_swarm::supervisor::Shutdown::Drain)
        .unwrap();
}

/// Waits (a few ledger sweeps at most, `limit` in all) until every page buffer of every
/// pool is free.
pub fn every_buffer_comes_back(sup: &Supervisor, limit: Duration) {
    every_buffer_comes_back_but(sup, limit, 0);
}

/// [`every_buffer_comes_back`], but for `kept` buffers something holds on purpose (a
/// cached value).
pub fn every_buffer_comes_back_but(sup: &Supervisor, limit: Duration, kept: usize) {
    let slab = sup.segment().slab(0);
    let all = slab.count() as usize - kept;
    let deadline = Instant::now() + limit;
    while slab.free_count() != all && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(slab.free_count(), all, "every page buffer comes back");
}

/// A thread that SIGKILLs an agent every `period`, each slot in turn, until stopped.
pub struct Chaos {
    stop: Arc<AtomicBool>,
    kills: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Chaos {
    /// Starts killing `sup`'s agents.
    pub fn start(sup: Arc<Supervisor>, period: Duration) -> Chaos {
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, kills) = (stop.clone(), kills.clone());
            std::thread::spawn(move || {
                // A pid killed and not yet reaped still shows in the status: each once.
                let mut killed = std::collections::HashSet::new();
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    k += 1;
                    let agents = sup.status().agents;
                    let a = &agents[k % agents.len()];
                    if a.pid != 0
                        && killed.insert(a.pid)
                        && nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(a.pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        )
                        .is_ok()
                    {
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Chaos {
            stop,
            kills,
            thread: Some(thread),
        }
    }

    /// Stops it; how many agents it killed.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the chaos thread");
        }
        self.kills.load(Ordering::Relaxed)
    }
}
