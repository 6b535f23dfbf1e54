//! `agent-bin`: the agent process. The supervisor forks and execs it with the shared
//! segment's descriptor inherited; all logic lives in the library.

use clap::Parser;
use neuralflow_swarm::peer::{self, PeerMode};
use neuralflow_swarm::segment::Segment;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(version, about = "neuralflow-swarm agent (started by the supervisor)")]
struct Args {
    /// Inherited descriptor of the shared segment.
    #[arg(long)]
    segment_fd: Option<i32>,
    /// This agent's slot in the segment.
    #[arg(long, default_value_t = 0)]
    slot: u32,
    /// This incarnation's epoch.
    #[arg(long, default_value_t = 1)]
    epoch: u32,
    /// Run a diagnostic peer loop (see the library's `peer` module).
    #[arg(long)]
    peer: PeerMode,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let segment = match args.segment_fd {
        // SAFETY: the supervisor passed this descriptor for the segment and nothing else in
        // this process owns it.
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
