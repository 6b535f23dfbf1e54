//! How the supervisor starts an agent: its command line.

use crate::runtime::sandbox::{SandboxPolicy, SandboxReport};
use crate::shm::segment::AgentFds;
use std::os::fd::RawFd;
use std::time::Duration;

/// The start of the probe's sandbox line (see [`probe_line`]).
pub const SANDBOX_LINE: &str = "neuralflow-swarm sandbox ";

/// The first argument of every agent the supervisor starts. A program that is its own
/// agent ([`super::serve_if_agent`]) recognizes itself by it.
pub const AGENT_FLAG: &str = "--swarm-agent";

/// After [`AGENT_FLAG`]: print [`probe_line`] and exit, so the supervisor can check an
/// agent executable at build time.
pub const PROBE_FLAG: &str = "--probe";

/// Set in the environment of a probed executable. A supervisor refuses to start in a
/// process that has it, so that a program started as an agent that never reaches
/// [`super::serve_if_agent`] cannot start supervisors of its own, recursively.
pub const PROBE_ENV: &str = "NEURALFLOW_SWARM_PROBE";

/// An agent's command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgsError {
    /// A flag without its value.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// A value that is not a number.
    #[error("{flag}: {value:?} is not a number")]
    NotANumber {
        /// The flag.
        flag: String,
        /// What was given.
        value: String,
    },
    /// A flag this agent does not know.
    #[error("unknown argument {0:?}")]
    Unknown(String),
    /// A descriptor of the segment is missing.
    #[error("--segment-fd, --slot-fd and --common-fd are required")]
    NoSegment,
    /// `--sandbox` names a measure this build does not know.
    #[error("--sandbox: {0:?} is not a list of sandbox measures")]
    Sandbox(String),
}

/// What an agent answers to the probe: its layout version and the kinds it serves. A
/// second line, [`SANDBOX_LINE`] and a [`SandboxReport`] line, says how the sandbox the
/// probe was asked for stood in the probed process.
pub fn probe_line(registry: &super::Registry) -> String {
    let kinds: Vec<String> = registry.kinds().map(|(k, _)| k.to_string()).collect();
    format!(
        "neuralflow-swarm agent layout={} kinds={}",
        crate::shm::segment::VERSION,
        kinds.join(",")
    )
}

/// How the supervisor started this agent (its command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Inherited descriptors of the segment's files.
    pub fds: AgentFds,
    /// Slot in the segment.
    pub slot: u32,
    /// This incarnation's epoch.
    pub epoch: u32,
    /// Read end of the supervisor-liveness pipe, if any.
    pub parent_fd: Option<RawFd>,
    /// Idle beat period.
    pub heartbeat_period: Duration,
    /// Spins before sleeping on an empty ring.
    pub spin: u32,
    /// The sandbox to apply before the first task (none unless `--sandbox` says).
    pub sandbox: SandboxPolicy,
}

impl AgentConfig {
    /// The command-line arguments that produce this configuration, after
    /// [`AGENT_FLAG`].
    pub fn to_args(&self) -> Vec<String> {
        let mut a = self.fds.to_args();
        a.extend([
            "--slot".into(),
            self.slot.to_string(),
            "--epoch".into(),
            self.epoch.to_string(),
            "--heartbeat-us".into(),
            self.heartbeat_period.as_micros().to_string(),
            "--spin".into(),
            self.spin.to_string(),
        ]);
        if let Some(fd) = self.parent_fd {
            a.push("--parent-fd".into());
            a.push(fd.to_string());
        }
        a.extend(self.sandbox.to_args());
        a
    }

    /// Parses what [`AgentConfig::to_args`] wrote (a leading [`AGENT_FLAG`] is skipped).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, ArgsError> {
        let mut c = AgentConfig {
            fds: AgentFds {
                segment: -1,
                slot_file: -1,
                common: -1,
            },
            slot: 0,
            epoch: 1,
            parent_fd: None,
            heartbeat_period: Duration::from_millis(100),
            spin: 2000,
            sandbox: SandboxPolicy::off(),
        };
        let mut it = args.into_iter().peekable();
        if it.peek().is_some_and(|a| a == AGENT_FLAG) {
            it.next();
        }
        while let Some(flag) = it.next() {
            let mut val = || it.next().ok_or(ArgsError::MissingValue(flag.clone()));
            let num = |value: String| {
                value.parse::<u64>().map_err(|_| ArgsError::NotANumber {
                    flag: flag.clone(),
                    value,
                })
            };
            match flag.as_str() {
                "--segment-fd" => c.fds.segment = num(val()?)? as RawFd,
                "--slot-fd" => c.fds.slot_file = num(val()?)? as RawFd,
                "--common-fd" => c.fds.common = num(val()?)? as RawFd,
                "--slot" => c.slot = num(val()?)? as u32,
                "--epoch" => c.epoch = num(val()?)? as u32,
                "--parent-fd" => c.parent_fd = Some(num(val()?)? as RawFd),
                "--heartbeat-us" => {
                    c.heartbeat_period = Duration::from_micros(num(val()?)?.max(1000))
                }
                "--spin" => c.spin = num(val()?)? as u32,
                "--sandbox" | "--read-path" | "--require-sandbox" => {
                    sandbox_arg(&mut c.sandbox, &flag, &mut val)?
                }
                _ => return Err(ArgsError::Unknown(flag)),
            }
        }
        if c.fds.all().iter().any(|&fd| fd < 0) {
            return Err(ArgsError::NoSegment);
        }
        Ok(c)
    }
}

/// Reads one of the sandbox's flags (`--sandbox LIST`, `--read-path P`,
/// `--require-sandbox`) into `policy`.
fn sandbox_arg(
    policy: &mut SandboxPolicy,
    flag: &str,
    val: &mut dyn FnMut() -> Result<String, ArgsError>,
) -> Result<(), ArgsError> {
    match flag {
        "--sandbox" => {
            let v = val()?;
            policy.measures = SandboxPolicy::parse_measures(&v).ok_or(ArgsError::Sandbox(v))?;
        }
        "--read-path" => policy.read_paths.push(val()?.into()),
        _ => policy.require = true,
    }
    Ok(())
}

/// The sandbox a probe is asked to try: the sandbox flags after [`PROBE_FLAG`].
pub fn probe_sandbox(args: impl IntoIterator<Item = String>) -> Result<SandboxPolicy, ArgsError> {
    let mut policy = SandboxPolicy::off();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(ArgsError::MissingValue(flag.clone()));
        match flag.as_str() {
            AGENT_FLAG | PROBE_FLAG => {}
            "--sandbox" | "--read-path" | "--require-sandbox" => {
                sandbox_arg(&mut policy, &flag, &mut val)?
            }
            _ => return Err(ArgsError::Unknown(flag)),
        }
    }
    Ok(policy)
}

/// The probe's sandbox line for `report`.
pub fn sandbox_line(report: &SandboxReport) -> String {
    format!("{SANDBOX_LINE}{}", report.to_line())
}
