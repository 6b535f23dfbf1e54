//! The runner of the one-binary test programs (`harness = false`): their `main` must call
//! `serve_if_agent` first, as an embedder's does, and then runs the tests it names.
//! Arguments filter the tests by name, as libtest's do; `--list` lists them.

use neuralflow_swarm::sandbox::SandboxPolicy;
use neuralflow_swarm::supervisor::{CgroupMode, Supervisor, SupervisorBuilder};
use neuralflow_swarm::task::{Outcome, TaskSpec};
use std::time::{Duration, Instant};

/// Upper bound on any single wait: a hang fails the test instead of the run.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Whether cgroups and the sandbox must be in force (`SWARM_REQUIRE_CGROUPS=1`): then a
/// test that needs them fails where they are missing instead of passing without them.
pub fn cgroups_required() -> bool {
    std::env::var("SWARM_REQUIRE_CGROUPS").is_ok_and(|v| v == "1")
}

/// A supervisor of `agents` agents that are this program, with cgroups and the sandbox
/// required when [`cgroups_required`].
pub fn builder(agents: u32) -> SupervisorBuilder {
    Supervisor::builder()
        .agents(agents)
        .agent_current_exe()
        .cgroups(if cgroups_required() {
            CgroupMode::Required
        } else {
            CgroupMode::Auto
        })
        .sandbox(sandbox(Vec::new()))
}

/// The default sandbox, reading beneath `read_paths`, required when [`cgroups_required`].
pub fn sandbox(read_paths: Vec<std::path::PathBuf>) -> SandboxPolicy {
    SandboxPolicy {
        read_paths,
        require: cgroups_required(),
        ..SandboxPolicy::default()
    }
}

/// Submits `spec` and waits for its outcome, at most [`WATCHDOG`].
pub fn wait(sup: &Supervisor, spec: TaskSpec) -> Outcome {
    sup.submit(spec)
        .unwrap()
        .wait(Some(WATCHDOG))
        .expect("an outcome within the watchdog")
}

/// A test: its name and its body.
pub type Test = (&'static str, fn());

/// The tests, by name.
#[macro_export]
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), $name as fn())),*]
    };
}

/// Runs the tests the arguments choose; fails when any fails.
pub fn run(tests: &[Test]) -> std::process::ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return std::process::ExitCode::SUCCESS;
    }
    let chosen: Vec<&Test> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let ran = chosen.len();
    println!("\nrunning {ran} tests");
    let mut failed = Vec::new();
    for (name, test) in chosen {
        let t = Instant::now();
        let ok = std::panic::catch_unwind(test).is_ok();
        println!(
            "test {name} ... {} ({:.2?})",
            if ok { "ok" } else { "FAILED" },
            t.elapsed()
        );
        if !ok {
            failed.push(*name);
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok. {ran} passed");
        std::process::ExitCode::SUCCESS
    } else {
        println!("\ntest result: FAILED. failures: {failed:?}");
        std::process::ExitCode::FAILURE
    }
}
