//! Flag values and the flags that several subcommands share: the value parsers clap
//! calls, and the agents of a swarm (`swarm run`, `swarm demo`).

use crate::pdf::job::{Roles, RunConfig};
use std::path::PathBuf;
use std::time::Duration;

/// Whether cgroups are required: by `--require-cgroups` (`flag`), or by
/// `SWARM_REQUIRE_CGROUPS=1` in the environment.
pub fn cgroups_required(flag: bool) -> bool {
    flag || std::env::var("SWARM_REQUIRE_CGROUPS").is_ok_and(|v| v == "1")
}

/// The agents' sandbox: every measure unless `off`; required by `--require-sandbox`
/// (`require`) or, as cgroups are, by `SWARM_REQUIRE_CGROUPS=1`.
pub fn sandbox_policy(off: bool, require: bool) -> crate::runtime::sandbox::SandboxPolicy {
    use crate::runtime::sandbox::SandboxPolicy;
    if off {
        return SandboxPolicy::off();
    }
    SandboxPolicy {
        require: cgroups_required(require),
        ..SandboxPolicy::default()
    }
}

/// A `--metrics` or `--listen` address: `PORT` (on loopback), `HOST:PORT`, `[IPV6]:PORT`.
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    crate::service::http::parse_addr(s).map_err(|e| e.to_string())
}

/// `--agents`: a count of at least one (a swarm of none would do nothing), or `MIN..MAX`
/// for an elastic pool; `(min, max)`, equal for a fixed count.
pub fn parse_agents(s: &str) -> Result<(u32, u32), String> {
    let count = |t: &str| match t.trim().parse::<u32>().map_err(|e| format!("{t:?}: {e}"))? {
        0 => Err("at least one agent is needed".to_string()),
        n => Ok(n),
    };
    match s.split_once("..") {
        None => count(s).map(|n| (n, n)),
        Some((a, b)) => {
            let (min, max) = (count(a)?, count(b)?);
            if min > max {
                return Err(format!("{s}: the pool's minimum is above its maximum"));
            }
            Ok((min, max))
        }
    }
}

/// The agents of a swarm, as `run` and `demo` take them.
#[derive(clap::Args, Debug)]
pub struct SwarmArgs {
    /// Agent processes, at least 1 (default: the number of CPUs); `MIN..MAX` for an
    /// elastic pool of generalists that grows while tasks wait and retires agents idle for
    /// 2 s (with `--roles`, each role's count is fixed and this is not used).
    #[arg(long, value_parser = parse_agents)]
    pub agents: Option<(u32, u32)>,
    /// Specialist agents per role, e.g. `parser=1,extractor=4,analyzer=1,aggregator=1`:
    /// pages move Parser → Extractor → Analyzer → Aggregator through page buffers.
    /// Default: generalists (`--agents` of them), each taking a page range end to end.
    #[arg(long, value_parser = Roles::parse)]
    pub roles: Option<Roles>,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Fail instead of running agents without a sandbox measure the kernel refuses
    /// (seccomp, Landlock, capabilities, ...; each is otherwise a warning).
    #[arg(long, conflicts_with = "no_sandbox")]
    pub require_sandbox: bool,
    /// Run agents without their sandbox (for comparison; not for untrusted documents).
    #[arg(long)]
    pub no_sandbox: bool,
}

impl SwarmArgs {
    /// A run of `files` with these agents and the defaults for the rest.
    pub fn config(self, files: Vec<PathBuf>) -> RunConfig {
        let cpus = crate::spawn::available_cpus().max(1) as u32;
        let (min, max) = self.agents.unwrap_or((cpus, cpus));
        RunConfig {
            agents: max,
            min_agents: (min < max).then_some(min),
            files,
            memory_limit: None,
            timeout_per_doc: Duration::from_secs(30),
            chunk_pages: 16,
            require_cgroups: cgroups_required(self.require_cgroups),
            agent_bin: self.agent_bin,
            roles: self.roles,
            sandbox: sandbox_policy(self.no_sandbox, self.require_sandbox),
            cache: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_at_least_one() {
        assert_eq!(parse_agents("3"), Ok((3, 3)));
        assert_eq!(parse_agents("2..8"), Ok((2, 8)));
        assert_eq!(
            parse_agents("0"),
            Err("at least one agent is needed".to_string())
        );
        assert!(parse_agents("many").is_err());
        assert!(parse_agents("0..4").is_err());
        assert!(parse_agents("5..2").is_err());
    }
}
