//! What `swarm run` is to do: the documents, the agents (generalists, or specialists per
//! role) and the limits.

use crate::pdf::stages::{PDF_AGGREGATE, PDF_ANALYZE, PDF_EXTRACT, PDF_PARSE};
use crate::supervisor::AgentClass;
use std::path::PathBuf;
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Agents (an elastic pool's maximum).
    pub agents: u32,
    /// An elastic pool's minimum: generalists from this many up to `agents` as the queue
    /// calls for them. `None`: a fixed `agents`.
    pub min_agents: Option<u32>,
    /// The PDF files.
    pub files: Vec<PathBuf>,
    /// Per-agent memory limit.
    pub memory_limit: Option<u64>,
    /// Time budget of one document.
    pub timeout_per_doc: Duration,
    /// Pages per task.
    pub chunk_pages: u32,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
    /// Specialist agents per role; `None` runs generalists (`agents` of them).
    pub roles: Option<Roles>,
    /// The agents' sandbox: its measures and whether they are required. Agents may read
    /// only the input files (the job sets `read_paths` from `files`).
    pub sandbox: crate::runtime::sandbox::SandboxPolicy,
    /// Generalists take a range's reply from the shared cache when a byte-identical
    /// document's same range was extracted (each copy still gets its own line).
    pub cache: bool,
}

impl RunConfig {
    /// A document's limits as this configuration gives them: its time budget, priority 0.
    pub fn doc_limits(&self) -> super::DocLimits {
        super::DocLimits {
            timeout: self.timeout_per_doc,
            priority: 0,
        }
    }
}

/// How many agents take each role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    /// Parsers: load documents, cut pages out.
    pub parser: u32,
    /// Extractors: pages to glyphs.
    pub extractor: u32,
    /// Analyzers: glyphs to layout and text.
    pub analyzer: u32,
    /// Aggregators: ranges to a document's line.
    pub aggregator: u32,
}

/// Why a `--roles` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseRolesError {
    /// A part that is not `ROLE=N`.
    #[error("{0:?}: expected ROLE=N")]
    NotAnAssignment(String),
    /// A part whose count is not a number.
    #[error("{0:?}: not a count")]
    NotACount(String),
    /// A role we do not have.
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    /// A role left without an agent.
    #[error("every role (parser, extractor, analyzer, aggregator) needs an agent")]
    RoleWithoutAgent,
}

impl Roles {
    /// Parses `parser=1,extractor=4,analyzer=1,aggregator=1` (roles left out get none;
    /// every role needs at least one agent).
    pub fn parse(s: &str) -> Result<Roles, ParseRolesError> {
        let mut r = Roles::default();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, n) = part
                .split_once('=')
                .ok_or_else(|| ParseRolesError::NotAnAssignment(part.to_string()))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| ParseRolesError::NotACount(part.to_string()))?;
            match name.trim() {
                "parser" => r.parser = n,
                "extractor" => r.extractor = n,
                "analyzer" => r.analyzer = n,
                "aggregator" => r.aggregator = n,
                other => return Err(ParseRolesError::UnknownRole(other.to_string())),
            }
        }
        if r.parser == 0 || r.extractor == 0 || r.analyzer == 0 || r.aggregator == 0 {
            return Err(ParseRolesError::RoleWithoutAgent);
        }
        Ok(r)
    }

    /// Agents in all.
    pub fn total(&self) -> u32 {
        self.parser + self.extractor + self.analyzer + self.aggregator
    }

    /// The supervisor's agent classes: one per role, serving that role's kind only.
    pub(super) fn classes(&self) -> Vec<AgentClass> {
        [
            ("parser", self.parser, PDF_PARSE),
            ("extractor", self.extractor, PDF_EXTRACT),
            ("analyzer", self.analyzer, PDF_ANALYZE),
            ("aggregator", self.aggregator, PDF_AGGREGATE),
        ]
        .into_iter()
        .map(|(name, count, kind)| AgentClass::new(name, count, Some(vec![kind])))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_every_role_needs_an_agent() {
        let r = Roles::parse("parser=1, extractor=4,analyzer=2,aggregator=1").unwrap();
        assert_eq!(
            (r.parser, r.extractor, r.analyzer, r.aggregator),
            (1, 4, 2, 1)
        );
        assert_eq!(r.total(), 8);
        for (bad, e) in [
            ("parser", ParseRolesError::NotAnAssignment("parser".into())),
            ("parser=x", ParseRolesError::NotACount("parser=x".into())),
            ("cook=1", ParseRolesError::UnknownRole("cook".into())),
            ("parser=1,extractor=1", ParseRolesError::RoleWithoutAgent),
        ] {
            assert_eq!(Roles::parse(bad), Err(e));
        }
    }
}
