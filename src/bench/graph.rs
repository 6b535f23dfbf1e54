//! `swarm bench graph`: graphs of noop tasks through the supervisor, by shape.
//!
//! - `random`: each node depends on about three earlier ones, mostly recent (so the graph
//!   is deep as well as wide);
//! - `chain`: each node depends on the one before; a *link* is the time from one node's
//!   completion being taken to the next one's, which is the whole cost of an edge:
//!   handing the output on, dispatching, running, taking the completion;
//! - `fan`: `nodes` independent nodes, then one that depends on them all.
//!
//! Times are the supervisor's own (ns since it started): when it dispatched a node's
//! last attempt and when it took that attempt's completion.

use crate::coord::{Graph, NodeId};
use crate::runtime::cgroup::Limits;
use crate::runtime::supervisor::{NodeEnd, Shutdown, Supervisor};
use crate::runtime::task::{kinds, Outcome, TaskSpec};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest the benchmark waits for any one node.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A graph's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// About three parents a node, mostly recent.
    Random,
    /// Each node after the one before.
    Chain,
    /// Independent nodes, then one after them all.
    Fan,
}

impl Shape {
    /// Its name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Random => "random",
            Shape::Chain => "chain",
            Shape::Fan => "fan",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Result<Shape, String> {
        match s {
            "random" => Ok(Shape::Random),
            "chain" => Ok(Shape::Chain),
            "fan" => Ok(Shape::Fan),
            other => Err(format!("unknown shape {other:?}: random, chain or fan")),
        }
    }

    /// Each node's parents, for `nodes` nodes.
    fn parents(self, nodes: usize) -> Vec<Vec<usize>> {
        match self {
            Shape::Chain => (0..nodes)
                .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
                .collect(),
            Shape::Fan => {
                let mut p: Vec<Vec<usize>> = (0..nodes).map(|_| Vec::new()).collect();
                p.push((0..nodes).collect());
                p
            }
            Shape::Random => {
                let mut x = 0x9E37_79B9_7F4A_7C15u64;
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                (0..nodes)
                    .map(|i| {
                        let mut ps = Vec::with_capacity(3);
                        while ps.len() < i.min(3) {
                            let p = i - 1 - (next() as usize % i.min(1000));
                            if !ps.contains(&p) {
                                ps.push(p);
                            }
                        }
                        ps
                    })
                    .collect()
            }
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct GraphBenchConfig {
    /// Shapes, in order.
    pub shapes: Vec<Shape>,
    /// Nodes per graph (a fan has one more, its sink).
    pub nodes: usize,
    /// Agents.
    pub agents: u32,
    /// Where to write a line per node (with several shapes, one file each, the shape's
    /// name added: `FILE.random`, ...).
    pub results: Option<PathBuf>,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// One shape's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeReport {
    /// Nodes run.
    pub nodes: usize,
    /// Edges.
    pub edges: usize,
    /// From the first submission to the last node's end.
    pub wall_seconds: f64,
    /// `nodes / wall_seconds`.
    pub nodes_per_second: f64,
    /// A chain's links, median (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_us_p50: Option<f64>,
    /// A chain's links, 99th percentile (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_us_p99: Option<f64>,
    /// Nodes that ran more than once (agents died under them).
    pub retried: usize,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct GraphBenchReport {
    /// Agents.
    pub agents: u32,
    /// By shape name.
    pub shapes: BTreeMap<String, ShapeReport>,
}

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphBenchError {
    /// The supervisor refused.
    #[error(transparent)]
    Supervisor(#[from] crate::runtime::supervisor::Error),
    /// The graph was refused.
    #[error(transparent)]
    Graph(#[from] crate::coord::GraphError),
    /// Writing results.
    #[error("results file: {0}")]
    Io(#[from] std::io::Error),
    /// A node failed or never ended.
    #[error("{0}")]
    Failed(String),
}

/// Runs every shape on one swarm.
pub fn run(cfg: &GraphBenchConfig) -> Result<GraphBenchReport, GraphBenchError> {
    let mut b = Supervisor::builder()
        .agents(cfg.agents)
        .limits(Limits::default())
        .require_cgroups(cfg.require_cgroups);
    if let Some(p) = &cfg.agent_bin {
        b = b.agent_bin(p);
    }
    let sup = b.build()?;
    if !super::all_ready(&sup, WATCHDOG) {
        return Err(GraphBenchError::Failed(
            "agents did not become ready".into(),
        ));
    }
    let mut shapes = BTreeMap::new();
    for &shape in &cfg.shapes {
        let results = cfg.results.as_ref().map(|p| {
            if cfg.shapes.len() == 1 {
                p.clone()
            } else {
                let mut name = p.clone().into_os_string();
                name.push(format!(".{}", shape.name()));
                PathBuf::from(name)
            }
        });
        let r = run_shape(&sup, shape, cfg.nodes.max(1), results.as_deref())?;
        shapes.insert(shape.name().to_string(), r);
    }
    sup.shutdown(Shutdown::Drain)?;
    Ok(GraphBenchReport {
        agents: cfg.agents,
        shapes,
    })
}

fn run_shape(
    sup: &Supervisor,
    shape: Shape,
    nodes: usize,
    results: Option<&Path>,
) -> Result<ShapeReport, GraphBenchError> {
    let parents = shape.parents(nodes);
    let mut g = Graph::new();
    for (i, ps) in parents.iter().enumerate() {
        let deps: Vec<NodeId> = ps.iter().map(|&p| NodeId(p)).collect();
        g.add_after(TaskSpec::new(kinds::NOOP, i as u64), &deps);
    }
    let n = parents.len();
    let start = Instant::now();
    let ends = super::all_completed(g.submit(sup)?.wait_all(Some(WATCHDOG)))
        .map_err(GraphBenchError::Failed)?;
    let wall = start.elapsed().as_secs_f64();
    let attempts = |e: &NodeEnd| match e.outcome {
        Outcome::Completed { attempts, .. } => attempts,
        Outcome::Failed(_) => unreachable!("all completed, checked above"),
    };
    if let Some(path) = results {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (i, e) in ends.iter().enumerate() {
            let ps: Vec<String> = parents[i].iter().map(usize::to_string).collect();
            writeln!(
                w,
                "{i}\t{}\t{}\t{}\t{}",
                attempts(e),
                e.timing.dispatched_ns,
                e.timing.ended_ns,
                ps.join(",")
            )?;
        }
        w.flush()?;
    }
    let (link_us_p50, link_us_p99) = if shape == Shape::Chain && n > 1 {
        let mut links: Vec<f64> = ends
            .windows(2)
            .map(|w| w[1].timing.ended_ns.saturating_sub(w[0].timing.ended_ns) as f64 / 1e3)
            .collect();
        links.sort_by(f64::total_cmp);
        (
            Some(super::pct(&links, 0.5)),
            Some(super::pct(&links, 0.99)),
        )
    } else {
        (None, None)
    };
    Ok(ShapeReport {
        nodes: n,
        edges: parents.iter().map(Vec::len).sum(),
        wall_seconds: wall,
        nodes_per_second: n as f64 / wall,
        link_us_p50,
        link_us_p99,
        retried: ends.iter().filter(|e| attempts(e) > 1).count(),
    })
}

/// The report as text.
pub fn render(r: &GraphBenchReport) -> String {
    let mut s = format!("graphs of noop tasks on {} agents\n", r.agents);
    for (name, x) in &r.shapes {
        s.push_str(&format!(
            "{name:>7}: {} nodes, {} edges in {:.3} s: {:.0} nodes/s",
            x.nodes, x.edges, x.wall_seconds, x.nodes_per_second
        ));
        if let (Some(p50), Some(p99)) = (x.link_us_p50, x.link_us_p99) {
            s.push_str(&format!("; a link {p50:.1} µs p50, {p99:.1} µs p99"));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_edges_they_say() {
        let r = Shape::Random.parents(1000);
        assert!(r
            .iter()
            .enumerate()
            .all(|(i, ps)| ps.len() == i.min(3) && ps.iter().all(|&p| p < i)));
        let c = Shape::Chain.parents(5);
        assert_eq!(c, vec![vec![], vec![0], vec![1], vec![2], vec![3]]);
        let f = Shape::Fan.parents(4);
        assert_eq!(f.len(), 5);
        assert_eq!(f[4], vec![0, 1, 2, 3]);
        assert!(Shape::parse("tree").is_err());
    }
}
