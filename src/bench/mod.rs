//! Layer 6: diagnostics. The benchmark suite behind `swarm bench` (every comparison
//! measured in one run, so that ratios survive a noisy machine) and the diagnostic
//! [`peer`] loops that the cross-process tests and `swarm bench ring` start in agents.

pub mod bus;
#[cfg(feature = "pdf")]
pub mod cache;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod graph;
pub mod peer;
#[cfg(feature = "pdf")]
pub mod pipeline;
pub mod ring;
pub mod sched;
#[cfg(feature = "service")]
pub mod soak;
pub mod state;
pub mod tasks;
#[cfg(feature = "service")]
pub mod watch;

pub use ring::{render_ring, ring, RingBenchConfig, RingBenchReport};

/// Waits until every agent of `sup` is ready, so that a measurement starts with the swarm
/// up; `false` if that takes longer than `limit`.
pub(crate) fn all_ready(
    sup: &crate::runtime::supervisor::Supervisor,
    limit: std::time::Duration,
) -> bool {
    let t0 = std::time::Instant::now();
    while sup.status().agents.iter().any(|a| a.phase != "ready") {
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    true
}

/// The benches' `swarm run`: `files` on `agents` generalists, a budget of 300 s a
/// document (a bench measures, it does not time out), the sandbox on, the cache as
/// `cache` says.
#[cfg(feature = "pdf")]
pub(crate) fn run_config(
    files: Vec<std::path::PathBuf>,
    agents: u32,
    require_cgroups: bool,
    agent_bin: Option<std::path::PathBuf>,
    cache: bool,
) -> crate::pdf::job::RunConfig {
    crate::pdf::job::RunConfig {
        agents: agents.max(1),
        min_agents: None,
        files,
        memory_limit: None,
        timeout_per_doc: std::time::Duration::from_secs(300),
        chunk_pages: 16,
        require_cgroups,
        agent_bin,
        roles: None,
        sandbox: crate::runtime::sandbox::SandboxPolicy::default(),
        cache,
    }
}

/// The demo's corpus of `documents` documents written to `dir`: their files.
#[cfg(feature = "pdf")]
pub(crate) fn demo_corpus(
    dir: &std::path::Path,
    documents: u32,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let spec = crate::pdf::demo::DemoSpec {
        documents: documents.max(1),
        ..crate::pdf::demo::DemoSpec::default()
    };
    Ok(crate::pdf::demo::write_corpus(dir, spec)?
        .into_iter()
        .map(|d| d.path)
        .collect())
}

/// The `p` quantile (0 to 1) of `sorted` samples, nearest rank; 0 for none.
pub(crate) use crate::runtime::probes::quantile as pct;

/// Every end of a graph's run, each completed, or what stopped it: a node that failed, or
/// the run not ending in time (`None`).
pub(crate) fn all_completed(
    ends: Option<Vec<crate::runtime::supervisor::NodeEnd>>,
) -> Result<Vec<crate::runtime::supervisor::NodeEnd>, String> {
    let ends = ends.ok_or("the graph did not end in time")?;
    match ends.iter().find(|e| !e.outcome.is_completed()) {
        Some(bad) => Err(format!("task {}: {:?}", bad.id, bad.outcome)),
        None => Ok(ends),
    }
}
