//! `agent-bin`: the agent process. The supervisor forks and execs it with the shared
//! segment's descriptor inherited; all logic lives in the library.
//!
//! - `agent-bin --segment-fd N --slot S --epoch E [...]`: the agent loop with the built-in
//!   task kinds (see `neuralflow_swarm::agent`), and the PDF kinds when the crate is built
//!   with feature `pdf`.
//! - `agent-bin --peer MODE [--segment-fd N] [--slot S] [--epoch E]`: a diagnostic peer for
//!   the cross-process tests and `swarm bench ring` (see `neuralflow_swarm::peer`).
//!
//! The peer's four flags are parsed here by hand so that the binary builds with the
//! runtime alone, without clap.

use neuralflow_swarm::agent::{self, Registry, RegistryError};
use neuralflow_swarm::peer::{self, PeerMode};
use neuralflow_swarm::segment::Segment;
use std::process::ExitCode;

const PEER_USAGE: &str =
    "usage: agent-bin --peer MODE [--segment-fd N] [--slot S (0)] [--epoch E (1)]";

/// A diagnostic peer's flags.
#[derive(Debug)]
struct PeerArgs {
    /// Inherited descriptor of the shared segment.
    segment_fd: Option<i32>,
    /// This agent's slot in the segment.
    slot: u32,
    /// This incarnation's epoch.
    epoch: u32,
    /// The peer loop to run.
    peer: PeerMode,
}

impl PeerArgs {
    /// Parses `--flag value` and `--flag=value`; the message names the flag at fault.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<PeerArgs, String> {
        let (mut segment_fd, mut slot, mut epoch, mut peer) = (None, 0, 1, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, mut inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .take()
                    .or_else(|| args.next())
                    .ok_or(format!("{flag} needs a value"))
            };
            let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
            match flag.as_str() {
                "--segment-fd" => segment_fd = Some(value()?.parse().map_err(|e| bad(&e))?),
                "--slot" => slot = value()?.parse().map_err(|e| bad(&e))?,
                "--epoch" => epoch = value()?.parse().map_err(|e| bad(&e))?,
                "--peer" => peer = Some(value()?.parse::<PeerMode>().map_err(|e| bad(&e))?),
                _ => return Err(format!("unexpected argument {flag:?}")),
            }
        }
        let peer = peer.ok_or("--peer is required")?;
        Ok(PeerArgs {
            segment_fd,
            slot,
            epoch,
            peer,
        })
    }
}

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
    let args = match PeerArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("agent-bin: {e}\n{PEER_USAGE}");
            return ExitCode::from(2);
        }
    };
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

/// The kinds this agent serves: the synthetic ones, and the PDF ones with feature `pdf`.
fn registry() -> Result<Registry, RegistryError> {
    #[cfg_attr(not(feature = "pdf"), allow(unused_mut))]
    let mut registry = Registry::with_synthetic();
    #[cfg(feature = "pdf")]
    neuralflow_swarm::pdf::tasks::register(&mut registry)?;
    Ok(registry)
}
