//! `swarm bench state`: the shared state, in one run.
//!
//! 1. Reads: two agents read one 64-byte key in place for `--read-ms`: reads a second, per
//!    agent (the mean of the two).
//! 2. Strong writes: one agent makes `--writes` strong writes back to back, each waiting for
//!    the supervisor's answer: the round trip's p50 and p99.
//! 3. Eventual visibility: one agent writes eventually every 200 µs, stamping each value
//!    with its clock; another agent reads the key in a loop and takes the time from the
//!    stamp to the read that first sees it: p50 and p99.
//! 4. Torn reads: writers of 400-byte values (strong and eventual) on agents SIGKILLed in a
//!    loop every 50 ms, for `--kill-ms`, while this process and an agent read the keys in a
//!    loop and check every value whole: `torn_reads` (must be 0).

use crate::runtime::probes::{check, StateWatch, StateWrite, Watched, Wrote};
use crate::runtime::supervisor::{Consistency, Shutdown, Supervisor, TaskHandle};
use crate::runtime::task::{kinds, Outcome, SpreadKey, TaskSpec};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct StateBenchConfig {
    /// How long each reader reads (ms).
    pub read_ms: u64,
    /// Strong writes of the write phase.
    pub writes: u64,
    /// How long writers are killed in a loop (ms).
    pub kill_ms: u64,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StateBenchReport {
    /// Reads a second, per agent.
    pub state_reads_per_s: f64,
    /// A strong write's round trip, p50 (µs).
    pub state_strong_write_us_p50: f64,
    /// A strong write's round trip, p99 (µs).
    pub state_strong_write_us_p99: f64,
    /// From an eventual write to a reader seeing it, p50 (µs).
    pub state_eventual_visible_us_p50: f64,
    /// From an eventual write to a reader seeing it, p99 (µs).
    pub state_eventual_visible_us_p99: f64,
    /// Values read torn while writers were killed in a loop (must be 0).
    pub torn_reads: u64,
    /// Reads checked in that phase.
    pub checked_reads: u64,
    /// Agents killed in that phase.
    pub kills: u64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum StateBenchError {
    /// The supervisor refused.
    #[error(transparent)]
    Supervisor(#[from] crate::runtime::supervisor::Error),
    /// A task failed or never ended.
    #[error("{0}")]
    Failed(String),
}

fn submit<T: Serialize>(
    sup: &Supervisor,
    kind: crate::runtime::task::TaskKind,
    input: &T,
    spread: SpreadKey,
) -> Result<TaskHandle, StateBenchError> {
    let bytes = serde_json::to_vec(input).map_err(|e| StateBenchError::Failed(e.to_string()))?;
    Ok(sup.submit(TaskSpec::new(kind, 0).with_bytes(bytes).spread_by(spread))?)
}

fn output<T: serde::de::DeserializeOwned>(h: TaskHandle) -> Result<T, StateBenchError> {
    match h.wait(Some(WATCHDOG)) {
        Some(Outcome::Completed { output, .. }) => {
            serde_json::from_slice(&output).map_err(|e| StateBenchError::Failed(e.to_string()))
        }
        other => Err(StateBenchError::Failed(format!(
            "a task ended badly: {other:?}"
        ))),
    }
}

fn watch(key: &str, ms: u64) -> StateWatch {
    StateWatch {
        key: key.into(),
        duration_ms: ms,
    }
}

fn writes(key: &str, count: u64, strong: bool, gap_us: u64, len: usize) -> StateWrite {
    StateWrite {
        key: key.into(),
        count,
        strong,
        gap_us,
        len,
        incr: false,
    }
}

/// Runs the benchmark.
pub fn run(cfg: &StateBenchConfig) -> Result<StateBenchReport, StateBenchError> {
    let mut b = Supervisor::builder()
        .agents(3)
        .require_cgroups(cfg.require_cgroups);
    if let Some(p) = &cfg.agent_bin {
        b = b.agent_bin(p);
    }
    let sup = Arc::new(b.build()?);
    if !super::all_ready(&sup, WATCHDOG) {
        return Err(StateBenchError::Failed(
            "agents did not become ready".into(),
        ));
    }
    // 1. Reads.
    let value = crate::runtime::probes::value(0, crate::runtime::bus::monotonic_ns(), 64);
    sup.state_put(b"read", &value, Consistency::Strong)?;
    let spread = SpreadKey::new();
    let readers = (0..2)
        .map(|_| {
            submit(
                &sup,
                kinds::STATE_WATCH,
                &watch("read", cfg.read_ms),
                spread,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut rates = Vec::new();
    for h in readers {
        rates.push(output::<Watched>(h)?.reads_per_s);
    }
    let reads_per_s = rates.iter().sum::<f64>() / rates.len() as f64;
    // 2. Strong writes.
    let wrote: Wrote = output(submit(
        &sup,
        kinds::STATE_WRITE,
        &writes("strong", cfg.writes, true, 0, 64),
        SpreadKey::new(),
    )?)?;
    // 3. Eventual visibility: the watcher first, then the writer beside it.
    let spread = SpreadKey::new();
    let count = 2000u64;
    let watcher = submit(
        &sup,
        kinds::STATE_WATCH,
        &watch("eventual", count * 200 / 1000 + 300),
        spread,
    )?;
    std::thread::sleep(Duration::from_millis(50));
    let writer = submit(
        &sup,
        kinds::STATE_WRITE,
        &writes("eventual", count, false, 200, 64),
        spread,
    )?;
    let _: Wrote = output(writer)?;
    let seen: Watched = output(watcher)?;
    // 4. Torn reads under writers killed in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let (checked, torn) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (sup, stop, checked, torn) = (sup.clone(), stop.clone(), checked.clone(), torn.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for key in [&b"ts"[..], b"te"] {
                    if let Ok(Some((_, v))) = sup.state_get(key) {
                        checked.fetch_add(1, Ordering::Relaxed);
                        if check(&v).is_none() {
                            torn.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        })
    };
    let mut handles = Vec::new();
    let mut kills = 0u64;
    let mut killed = std::collections::HashSet::new();
    let end = Instant::now() + Duration::from_millis(cfg.kill_ms);
    while Instant::now() < end {
        for (key, strong) in [("ts", true), ("te", false)] {
            handles.push(submit(
                &sup,
                kinds::STATE_WRITE,
                &writes(key, 400, strong, 50, 400),
                SpreadKey::new(),
            )?);
        }
        handles.push(submit(
            &sup,
            kinds::STATE_WATCH,
            &watch("ts", 50),
            SpreadKey::new(),
        )?);
        std::thread::sleep(Duration::from_millis(50));
        // A writer dies: the first running agent not yet killed.
        if let Some(a) = sup
            .status()
            .agents
            .iter()
            .find(|a| a.pid != 0 && a.in_flight > 0 && !killed.contains(&a.pid))
        {
            killed.insert(a.pid);
            let pid = nix::unistd::Pid::from_raw(a.pid as i32);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                kills += 1;
            }
        }
    }
    let mut agent_torn = 0;
    for h in handles {
        if let Some(Outcome::Completed { output, .. }) = h.wait(Some(WATCHDOG)) {
            if let Ok(w) = serde_json::from_slice::<Watched>(&output) {
                agent_torn += w.torn;
                checked.fetch_add(w.reads, Ordering::Relaxed);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    match Arc::try_unwrap(sup) {
        Ok(sup) => sup.shutdown(Shutdown::Cancel).map(drop)?,
        Err(_) => {
            return Err(StateBenchError::Failed(
                "the supervisor is still shared".into(),
            ))
        }
    }
    Ok(StateBenchReport {
        state_reads_per_s: reads_per_s,
        state_strong_write_us_p50: wrote.write_us_p50,
        state_strong_write_us_p99: wrote.write_us_p99,
        state_eventual_visible_us_p50: seen.visible_us_p50,
        state_eventual_visible_us_p99: seen.visible_us_p99,
        torn_reads: torn.load(Ordering::Relaxed) + agent_torn,
        checked_reads: checked.load(Ordering::Relaxed),
        kills,
    })
}

/// The report as text.
pub fn render(r: &StateBenchReport) -> String {
    format!(
        "reads in place: {:.1} M/s per agent\n\
         strong write round trip: {:.1} µs p50, {:.1} µs p99\n\
         eventual write to a reader seeing it: {:.1} µs p50, {:.1} µs p99\n\
         writers killed in a loop ({} kills): {} torn of {} reads checked",
        r.state_reads_per_s / 1e6,
        r.state_strong_write_us_p50,
        r.state_strong_write_us_p99,
        r.state_eventual_visible_us_p50,
        r.state_eventual_visible_us_p99,
        r.kills,
        r.torn_reads,
        r.checked_reads,
    )
}
