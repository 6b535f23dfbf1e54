//! `agent-bin`: the agent process. The supervisor forks and execs it with the shared
//! segment's descriptor inherited; all logic lives in the library.
//!
//! - `agent-bin --segment-fd N --slot S --epoch E [...]`: the agent loop with the built-in
//!   task kinds (see `neuralflow_swarm::agent`), and the PDF kinds when the crate is built
//!   with feature `pdf`.
//! - `agent-bin --peer MODE [--segment-fd N] [--slot S] [--epoch E]`: a diagnostic peer for
//!   the cross-process tests and `swarm bench ring` (see `neuralflow_swarm::peer`).

use neuralflow_swarm::agent::{self, Registry, RegistryError};
use std::process::ExitCode;

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--peer" || a.starts_with("--peer=")) {
        return match registry() {
            Ok(r) => agent::main_with(r),
            Err(e) => {
                eprintln!("agent-bin: {e}");
                ExitCode::from(1)
            }
        };
    }
    neuralflow_swarm::peer::main_with_args(std::env::args().skip(1))
}

/// The kinds this agent serves: the synthetic ones, and the PDF ones with feature `pdf`.
fn registry() -> Result<Registry, RegistryError> {
    #[cfg_attr(not(feature = "pdf"), allow(unused_mut))]
    let mut registry = Registry::with_synthetic();
    #[cfg(feature = "pdf")]
    neuralflow_swarm::pdf::tasks::register(&mut registry)?;
    Ok(registry)
}
