//! The agents' sandbox: what an agent gives up before it runs its first task.
//!
//! Agents parse untrusted documents. An agent that a document takes over must reach as
//! little as possible, so every agent, after it has mapped the segment and started its
//! two watch threads and before it pops a task, applies these [`Measure`]s to itself, in
//! this order:
//!
//! | measure | what it does | what it stops |
//! |---|---|---|
//! | `rlimits` | `RLIMIT_CORE` 0, `RLIMIT_FSIZE` 0 (and `SIGXFSZ` ignored), `RLIMIT_NOFILE` 64 | core dumps of document data, files written through inherited descriptors, descriptor floods |
//! | `not_dumpable` | `PR_SET_DUMPABLE` 0 | `ptrace` and `/proc/PID/mem` of the agent by its siblings (they share its uid) |
//! | `no_new_privs` | `PR_SET_NO_NEW_PRIVS` | gaining privileges through `execve` of set-uid files; needed by the two below |
//! | `landlock` | reads only beneath the paths given ([`SandboxPolicy::read_paths`]), writes nowhere; no TCP; no signals or abstract sockets out of the sandbox (as far as the kernel's ABI goes) | opening any other file |
//! | `capabilities` | every capability dropped: effective, permitted, inheritable, ambient and the bounding set | what root could do beyond its uid (agents run as root on some hosts) |
//! | `seccomp` | an allow-list of system calls ([`seccomp`]); anything else kills the process (`SIGSYS`) | sockets, `fork`, `execve`, `ptrace`, signals to other processes, mounts, ... |
//! | `network` | no socket can be made (the filter); without the filter, a network namespace of its own | reaching any host or service |
//!
//! Each measure is on by default. The supervisor first has its probe apply them (see
//! [`crate::runtime::supervisor`]): what the kernel refuses is reported `unavailable`
//! with the reason, once, as a warning, and the agents are started with the measures
//! that hold, each of which they then must apply or exit. With
//! [`SandboxPolicy::require`], a measure the kernel refuses fails the supervisor's
//! `build()` instead.

mod files;
mod limits;
mod privileges;
pub mod seccomp;

use std::path::PathBuf;

/// One measure of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Measure {
    /// Resource limits: no core files, no file writes, few descriptors.
    Rlimits,
    /// Not dumpable: no `ptrace` by siblings.
    NotDumpable,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Landlock: reads only beneath the given paths.
    Landlock,
    /// Every capability dropped.
    Capabilities,
    /// The system-call filter.
    Seccomp,
    /// No network.
    Network,
}

impl Measure {
    /// Every measure, in the order they are applied.
    pub const ALL: [Measure; 7] = [
        Measure::Rlimits,
        Measure::NotDumpable,
        Measure::NoNewPrivs,
        Measure::Landlock,
        Measure::Capabilities,
        Measure::Seccomp,
        Measure::Network,
    ];

    /// Its name in reports and on the agent's command line.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Rlimits => "rlimits",
            Measure::NotDumpable => "not_dumpable",
            Measure::NoNewPrivs => "no_new_privs",
            Measure::Landlock => "landlock",
            Measure::Capabilities => "capabilities",
            Measure::Seccomp => "seccomp",
            Measure::Network => "network",
        }
    }

    /// The measure of that name.
    pub fn from_name(name: &str) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How a measure stands in an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasureState {
    /// In force.
    On,
    /// Not asked for.
    Off,
    /// Asked for, but this kernel or this process cannot have it; why.
    Unavailable(String),
}

impl MeasureState {
    /// `on`, `off`, or `unavailable: why`.
    pub fn describe(&self) -> String {
        match self {
            MeasureState::On => "on".into(),
            MeasureState::Off => "off".into(),
            MeasureState::Unavailable(why) => format!("unavailable: {why}"),
        }
    }
}

/// Each measure and how it stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxReport {
    /// In the order of [`Measure::ALL`].
    pub measures: Vec<(Measure, MeasureState)>,
}

impl SandboxReport {
    /// How `m` stands (`Off` when not reported).
    pub fn state(&self, m: Measure) -> &MeasureState {
        self.measures
            .iter()
            .find(|(k, _)| *k == m)
            .map_or(&MeasureState::Off, |(_, s)| s)
    }

    /// The measures in force.
    pub fn on(&self) -> Vec<Measure> {
        self.measures
            .iter()
            .filter(|(_, s)| *s == MeasureState::On)
            .map(|(m, _)| *m)
            .collect()
    }

    /// The measures asked for that did not hold, with why.
    pub fn unavailable(&self) -> impl Iterator<Item = (Measure, &str)> + '_ {
        self.measures.iter().filter_map(|(m, s)| match s {
            MeasureState::Unavailable(why) => Some((*m, why.as_str())),
            _ => None,
        })
    }

    /// One line: `name=state` pairs, `;`-separated (what the probe prints).
    pub fn to_line(&self) -> String {
        self.measures
            .iter()
            .map(|(m, s)| format!("{}={}", m.name(), s.describe().replace([';', '\n'], ",")))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Reads what [`SandboxReport::to_line`] wrote; unknown names are skipped.
    pub fn from_line(line: &str) -> SandboxReport {
        let measures = line
            .split(';')
            .filter_map(|pair| {
                let (name, state) = pair.split_once('=')?;
                let state = match state {
                    "on" => MeasureState::On,
                    "off" => MeasureState::Off,
                    s => MeasureState::Unavailable(
                        s.strip_prefix("unavailable: ").unwrap_or(s).to_string(),
                    ),
                };
                Some((Measure::from_name(name)?, state))
            })
            .collect();
        SandboxReport { measures }
    }
}

impl serde::Serialize for SandboxReport {
    /// As an object: `{"seccomp": "on", "landlock": "unavailable: ...", ...}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.measures.len()))?;
        for (m, state) in &self.measures {
            map.serialize_entry(m.name(), &state.describe())?;
        }
        map.end()
    }
}

/// What an agent is to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// The measures asked for.
    pub measures: Vec<Measure>,
    /// Where an agent may read files (documents given by path): each path and what is
    /// beneath it. Nothing else can be opened under Landlock.
    pub read_paths: Vec<PathBuf>,
    /// Each measure asked for must hold: one that cannot is an error, not a warning.
    pub require: bool,
}

impl Default for SandboxPolicy {
    /// Every measure, best effort, no file readable.
    fn default() -> Self {
        SandboxPolicy {
            measures: Measure::ALL.to_vec(),
            read_paths: Vec::new(),
            require: false,
        }
    }
}

impl SandboxPolicy {
    /// No measure at all.
    pub fn off() -> Self {
        SandboxPolicy {
            measures: Vec::new(),
            ..SandboxPolicy::default()
        }
    }

    /// The same policy with only these measures.
    pub fn with_measures(&self, measures: Vec<Measure>) -> Self {
        SandboxPolicy {
            measures,
            ..self.clone()
        }
    }

    /// The agent's command-line arguments for it.
    pub fn to_args(&self) -> Vec<String> {
        let names: Vec<&str> = self.measures.iter().map(|m| m.name()).collect();
        let mut a = vec![
            "--sandbox".to_string(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(",")
            },
        ];
        for p in &self.read_paths {
            a.push("--read-path".into());
            a.push(p.display().to_string());
        }
        if self.require {
            a.push("--require-sandbox".into());
        }
        a
    }

    /// The measures named in a `--sandbox` value (`none` for none).
    pub fn parse_measures(value: &str) -> Option<Vec<Measure>> {
        if value == "none" {
            return Some(Vec::new());
        }
        value.split(',').map(Measure::from_name).collect()
    }
}

/// Why the sandbox could not be applied as required.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sandbox measure {measure} could not be applied: {why}", measure = .measure.name())]
pub struct SandboxError {
    /// The measure.
    pub measure: Measure,
    /// Why.
    pub why: String,
}

/// Applies `policy` to this process (all its threads), in the order of [`Measure::ALL`].
/// Returns how each measure stands; with `policy.require`, the first that fails is an
/// error and nothing after it is tried.
///
/// Irreversible: call it once the process has everything it needs from the world (its
/// descriptors mapped, its threads started).
pub fn apply(policy: &SandboxPolicy) -> Result<SandboxReport, SandboxError> {
    let wants = |m| policy.measures.contains(&m);
    let mut report = SandboxReport::default();
    let mut seccomp_on = false;
    for m in Measure::ALL {
        let state = if !wants(m) {
            MeasureState::Off
        } else {
            let result = match m {
                Measure::Rlimits => limits::apply(),
                Measure::NotDumpable => privileges::not_dumpable(),
                Measure::NoNewPrivs => privileges::no_new_privs(),
                Measure::Landlock => files::restrict(&policy.read_paths),
                Measure::Capabilities => privileges::drop_capabilities(),
                Measure::Seccomp => seccomp::install().inspect(|_| seccomp_on = true),
                // Sockets are refused by the filter; without it, a namespace of our own.
                Measure::Network if seccomp_on => Ok(()),
                Measure::Network => privileges::own_network_namespace(),
            };
            match result {
                Ok(()) => MeasureState::On,
                Err(why) if policy.require => return Err(SandboxError { measure: m, why }),
                Err(why) => MeasureState::Unavailable(why),
            }
        };
        report.measures.push((m, state));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports and policies go through their text forms unchanged.
    #[test]
    fn reports_and_policies_round_trip() {
        let r = SandboxReport {
            measures: vec![
                (Measure::Seccomp, MeasureState::On),
                (
                    Measure::Landlock,
                    MeasureState::Unavailable("no; kernel".into()),
                ),
                (Measure::Rlimits, MeasureState::Off),
            ],
        };
        let back = SandboxReport::from_line(&r.to_line());
        assert_eq!(back.state(Measure::Seccomp), &MeasureState::On);
        assert_eq!(
            back.state(Measure::Landlock),
            &MeasureState::Unavailable("no, kernel".into())
        );
        assert_eq!(back.state(Measure::Rlimits), &MeasureState::Off);
        assert_eq!(back.on(), vec![Measure::Seccomp]);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""seccomp":"on""#), "{json}");

        let p = SandboxPolicy::default();
        let args = p.to_args();
        assert_eq!(
            SandboxPolicy::parse_measures(&args[1]).unwrap(),
            Measure::ALL.to_vec()
        );
        assert_eq!(SandboxPolicy::parse_measures("none").unwrap(), vec![]);
        assert!(SandboxPolicy::parse_measures("seccomp,bogus").is_none());
    }
}
