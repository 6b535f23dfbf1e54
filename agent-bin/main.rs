//! `agent-bin`: the agent process. The supervisor forks and execs it with the shared
//! segment's descriptor inherited; all logic lives in the library.
//!
//! - `agent-bin --segment-fd N --slot S --epoch E [...]`: the agent loop with the built-in
//!   task kinds (see `neuralflow_swarm::agent`).
//! - `agent-bin --peer MODE ...`: a diagnostic peer for the cross-process tests and
//!   `swarm bench ring` (see `neuralflow_swarm::peer`).

use clap::Parser;
use neuralflow_swarm::agent::{self, Registry};
use neuralflow_swarm::peer::{self, PeerMode};
use neuralflow_swarm::segment::Segment;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(version, about = "neuralflow-swarm diagnostic peer")]
struct PeerArgs {
    /// Inherited descriptor of the shared segment.
    #[arg(long)]
    segment_fd: Option<i32>,
    /// This agent's slot in the segment.
    #[arg(long, default_value_t = 0)]
    slot: u32,
    /// This incarnation's epoch.
    #[arg(long, default_value_t = 1)]
    epoch: u32,
    /// The peer loop to run.
    #[arg(long)]
    peer: PeerMode,
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--peer") {
        let mut registry = Registry::with_synthetic();
        if let Err(e) = neuralflow_swarm::pdf::tasks::register(&mut registry) {
            eprintln!("agent-bin: {e}");
            return ExitCode::from(1);
        }
        return agent::main_with(registry);
    }
    let args = PeerArgs::parse();
    let segment = match args.segment_fd {
        // SAFETY: the parent passed this descriptor for the segment and nothing else in this
        // process owns it.
        Some(fd) => match unsafe { Segment::open_raw(fd) } {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("agent-bin: slot {}: {e}", args.slot);
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    match peer::run(segment, args.slot, args.epoch, args.peer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-bin: slot {}: {e}", args.slot);
            ExitCode::from(1)
        }
    }
}
