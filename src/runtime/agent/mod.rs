//! The agent runtime: what runs inside `agent-bin` or inside an embedder's own binary.
//!
//! An agent opens the inherited segment, announces itself on its heartbeat line, then loops:
//! pop tasks from its to-agent ring, run each through the [`Registry`], put the output in a
//! page-buffer chain of its own, push the completion, ring the supervisor's doorbell.
//!
//! # Liveness
//!
//! A thread of the agent beats its heartbeat every half period for as long as the process
//! runs, so a handler never has to: ordinary CPU-bound code that computes for seconds is
//! not taken for hung. A process that stops as a whole (`SIGSTOP`, a frozen machine) stops
//! beating, and the supervisor kills it as hung within its hang timeout (three heartbeat
//! periods by default). A handler that never returns while the process lives is caught by
//! the task's run-time limit ([`crate::runtime::task::TaskSpec::timeout`], or the
//! supervisor's per-kind limit), reported as a `timeout`.
//!
//! A panic in a handler is caught: the task fails with the panic's message and location
//! ([`crate::runtime::task::Failure::Panicked`]) and the agent takes its next task.
//!
//! A watcher thread blocks on a pipe whose write end only the supervisor holds; when the
//! supervisor dies, however it dies, the read returns end-of-file and the agent exits at
//! once. (`PR_SET_PDEATHSIG` would fire when the *thread* that forked the agent exits, not
//! the process, which is wrong for a supervisor that respawns from any thread.)
//!
//! # One binary
//!
//! A program can be its own agent: it calls [`serve_if_agent`] first thing in `main`, and
//! builds its supervisor with
//! [`agent_current_exe`](crate::runtime::supervisor::SupervisorBuilder::agent_current_exe).
//! Started by the supervisor, the call runs the agent loop and exits; started by anyone
//! else, it returns at once.
//!
//! ```no_run
//! use neuralflow_swarm::agent::{serve_if_agent, Registry};
//! use neuralflow_swarm::task::TaskKind;
//!
//! fn registry() -> Registry {
//!     let mut registry = Registry::with_synthetic();
//!     let upper = |ctx: &neuralflow_swarm::agent::TaskContext<'_>| {
//!         Ok::<_, String>(ctx.input().to_ascii_uppercase())
//!     };
//!     registry.register(TaskKind(1000), "upper", upper).expect("a new kind");
//!     registry
//! }
//!
//! fn main() {
//!     serve_if_agent(registry);
//!     // ... the program itself: build a supervisor with `agent_current_exe()` ...
//! }
//! ```

use crate::runtime::sandbox::SandboxPolicy;

mod bus;
mod cache;
mod config;
mod context;
mod liveness;
mod registry;
mod run;
mod state;
mod synthetic;

pub use bus::{Bus, PublishError};
pub use cache::{Cache, CacheError, Source};
pub use config::{
    probe_line, probe_sandbox, sandbox_line, AgentConfig, ArgsError, AGENT_FLAG, PROBE_ENV,
    PROBE_FLAG, SANDBOX_LINE,
};
pub use context::TaskContext;
pub use registry::{Handler, Registry, RegistryError};
pub use run::run;
pub use state::{SharedState, StateError};

/// Why an agent stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The segment did not validate.
    #[error("slot {slot}: {source}")]
    Segment {
        /// This agent's slot.
        slot: u32,
        /// What was wrong.
        #[source]
        source: crate::shm::segment::SegmentError,
    },
    /// A ring's counters were inconsistent.
    #[error("slot {slot}: {source}")]
    Ring {
        /// This agent's slot.
        slot: u32,
        /// What was wrong.
        #[source]
        source: crate::shm::ring::RingCorrupt,
    },
    /// The slab failed in a way retrying cannot fix.
    #[error("slot {slot}: {source}")]
    Slab {
        /// This agent's slot.
        slot: u32,
        /// What was wrong.
        #[source]
        source: crate::shm::slab::SlabError,
    },
    /// The sandbox could not be applied as asked.
    #[error("slot {slot}: {source}")]
    Sandbox {
        /// This agent's slot.
        slot: u32,
        /// What failed.
        #[source]
        source: crate::runtime::sandbox::SandboxError,
    },
    /// A watch thread could not start.
    #[error("slot {slot}: cannot start a thread: {source}")]
    Thread {
        /// This agent's slot.
        slot: u32,
        /// What was wrong.
        #[source]
        source: std::io::Error,
    },
}

/// Runs an agent with `registry` on this process's arguments and returns its exit status:
/// 0 after a requested stop, 1 on an error, 2 on bad arguments. Answers the probe
/// ([`PROBE_FLAG`]) without starting the loop.
fn serve(args: Vec<String>, registry: &Registry) -> u8 {
    if args.first().is_some_and(|a| a == AGENT_FLAG) && args.get(1).is_some_and(|a| a == PROBE_FLAG)
    {
        // The probe tries the sandbox it is given on itself, so the supervisor learns what
        // this kernel allows before any agent starts.
        let report = match probe_sandbox(args) {
            Ok(policy) => crate::runtime::sandbox::apply(&SandboxPolicy {
                require: false,
                ..policy
            }),
            Err(e) => {
                eprintln!("agent: {e}");
                return 2;
            }
        };
        println!("{}", probe_line(registry));
        if let Ok(report) = report {
            println!("{}", sandbox_line(&report));
        }
        return 0;
    }
    let config = match AgentConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent: {e}");
            return 2;
        }
    };
    match run(&config, registry) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agent: {e}");
            1
        }
    }
}

/// Convenience for agent binaries: parse the arguments, run, map the result to an exit code.
pub fn main_with(registry: Registry) -> std::process::ExitCode {
    std::process::ExitCode::from(serve(std::env::args().skip(1).collect(), &registry))
}

/// One-binary mode: when this process was started by a supervisor as an agent (its first
/// argument is [`AGENT_FLAG`]), builds the registry, runs the agent loop and exits the
/// process; otherwise returns at once without calling `registry`. Call it first thing in
/// `main`, before anything that should not run in every agent.
pub fn serve_if_agent(registry: impl FnOnce() -> Registry) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == AGENT_FLAG) {
        let code = serve(args, &registry());
        std::process::exit(i32::from(code));
    }
}
