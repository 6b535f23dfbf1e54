//! A graph of tasks, built node by node with dependencies in any order: refused at submit
//! when it has a cycle (the error names one), otherwise put in topological order and
//! handed to the supervisor, which runs each node once all it depends on has completed,
//! with their outputs (held in page buffers, not copied) as its inputs, in the order given.

use crate::runtime::supervisor::{Error, GraphNode, GraphRun, NodeEnd, Supervisor};
use crate::runtime::task::TaskSpec;
use std::time::Duration;

/// A node of a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// Why a graph was not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The dependencies go round: these nodes, each depending on the next and the last on
    /// the first.
    #[error("the graph has a cycle: {}", join(.0))]
    Cycle(Vec<NodeId>),
    /// A dependency names a node that is not in the graph.
    #[error("{node} depends on {missing}, which is not in the graph")]
    UnknownNode {
        /// The node whose dependency it is.
        node: NodeId,
        /// The node named.
        missing: NodeId,
    },
    /// A node was given dependencies or a setting, but is not in the graph.
    #[error("{0} is not in the graph")]
    NoSuchNode(NodeId),
    /// A node depends on the same node twice.
    #[error("{node} depends on {twice} twice")]
    Duplicate {
        /// The node.
        node: NodeId,
        /// The dependency named twice.
        twice: NodeId,
    },
    /// The supervisor refused it.
    #[error(transparent)]
    Supervisor(#[from] Error),
}

fn join(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.0.to_string())
        .collect::<Vec<_>>()
        .join(" → ")
}

#[derive(Debug)]
struct Node {
    spec: TaskSpec,
    after: Vec<NodeId>,
    tolerate_failed: bool,
}

/// Tasks and the dependencies between them.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// The first node named by [`Graph::depend`] or [`Graph::tolerate_failed`] that is
    /// not in the graph: refused by [`Graph::order`].
    missing: Option<NodeId>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node with no dependencies (yet).
    pub fn add(&mut self, spec: TaskSpec) -> NodeId {
        self.nodes.push(Node {
            spec,
            after: Vec::new(),
            tolerate_failed: false,
        });
        NodeId(self.nodes.len() - 1)
    }

    /// Adds a node that runs after `deps`, whose outputs are its inputs in that order.
    pub fn add_after(&mut self, spec: TaskSpec, deps: &[NodeId]) -> NodeId {
        let id = self.add(spec);
        self.nodes[id.0].after.extend_from_slice(deps);
        id
    }

    /// Makes `node` depend on `on` too (its output the next input): any two nodes, in
    /// any order, so a cycle can be written; [`Graph::submit`] refuses it.
    pub fn depend(&mut self, node: NodeId, on: NodeId) {
        match self.nodes.get_mut(node.0) {
            Some(n) => n.after.push(on),
            None => self.missing = self.missing.or(Some(node)),
        }
    }

    /// Lets `node` run when a dependency failed, with an empty input in its place,
    /// instead of failing with it.
    pub fn tolerate_failed(&mut self, node: NodeId) {
        match self.nodes.get_mut(node.0) {
            Some(n) => n.tolerate_failed = true,
            None => self.missing = self.missing.or(Some(node)),
        }
    }

    /// Nodes in the graph.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes in a topological order (dependencies first; among nodes ready at once,
    /// the lower id first), or why there is none.
    pub fn order(&self) -> Result<Vec<NodeId>, GraphError> {
        if let Some(node) = self.missing {
            return Err(GraphError::NoSuchNode(node));
        }
        let n = self.nodes.len();
        let mut indegree = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            let mut seen = std::collections::HashSet::new();
            for &d in &node.after {
                if d.0 >= n {
                    return Err(GraphError::UnknownNode {
                        node: NodeId(i),
                        missing: d,
                    });
                }
                if !seen.insert(d) {
                    return Err(GraphError::Duplicate {
                        node: NodeId(i),
                        twice: d,
                    });
                }
                indegree[i] += 1;
                dependents[d.0].push(i);
            }
        }
        let mut ready: std::collections::VecDeque<usize> =
            (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_front() {
            order.push(NodeId(i));
            for &j in &dependents[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push_back(j);
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        Err(GraphError::Cycle(self.a_cycle(&indegree)))
    }

    /// One cycle among the nodes Kahn's algorithm could not order (`left[i] > 0`): from
    /// any of them, follow a dependency that is also left until a node repeats.
    fn a_cycle(&self, left: &[usize]) -> Vec<NodeId> {
        let Some(start) = (0..left.len()).find(|&i| left[i] > 0) else {
            return Vec::new();
        };
        let mut path = vec![start];
        let mut at = vec![usize::MAX; left.len()];
        at[start] = 0;
        let mut i = start;
        loop {
            // A node left over has a dependency left over (else it would have been ordered).
            let Some(next) = self.nodes[i]
                .after
                .iter()
                .map(|d| d.0)
                .find(|&d| left[d] > 0)
            else {
                return path.into_iter().map(NodeId).collect();
            };
            if at[next] != usize::MAX {
                // Each node of the path depends on the one after it, and `i`, the last,
                // on `next`: from `next` on, that is the cycle.
                return path[at[next]..].iter().map(|&k| NodeId(k)).collect();
            }
            at[next] = path.len();
            path.push(next);
            i = next;
        }
    }

    /// Checks and orders the graph and submits it: every node ends once, through the
    /// returned [`Run`].
    pub fn submit(self, sup: &Supervisor) -> Result<Run<'_>, GraphError> {
        let order = self.order()?;
        let mut position = vec![0usize; self.nodes.len()];
        for (k, id) in order.iter().enumerate() {
            position[id.0] = k;
        }
        let mut nodes: Vec<Option<Node>> = self.nodes.into_iter().map(Some).collect();
        let list = order
            .iter()
            .map(|id| {
                let node = nodes[id.0].take().expect("each node once in the order");
                GraphNode {
                    spec: node.spec,
                    after: node.after.iter().map(|d| position[d.0]).collect(),
                    tolerate_failed: node.tolerate_failed,
                }
            })
            .collect();
        let run = sup.submit_graph(list)?;
        Ok(Run { run, order })
    }
}

/// A graph being run (see [`Graph::submit`]).
#[derive(Debug)]
pub struct Run<'s> {
    run: GraphRun<'s>,
    /// The graph's node at each position of the submitted order.
    order: Vec<NodeId>,
}

impl Run<'_> {
    /// The next node to end, waiting at most `timeout`; `None` once every node has been
    /// joined or when the time ran out (tell them apart by [`Run::open`]).
    pub fn join_next(&mut self, timeout: Option<Duration>) -> Option<(NodeId, NodeEnd)> {
        let end = self.run.join_next(timeout)?;
        Some((self.order[end.node], end))
    }

    /// Nodes not yet joined.
    pub fn open(&self) -> usize {
        self.run.open()
    }

    /// Every node's end, by node id; `None` if `timeout` ran out first.
    pub fn wait_all(self, timeout: Option<Duration>) -> Option<Vec<NodeEnd>> {
        // The run's ends come in submitted order; put each at its node's id.
        let mut ends: Vec<Option<NodeEnd>> = (0..self.order.len()).map(|_| None).collect();
        for (k, end) in self.run.wait_all(timeout)?.into_iter().enumerate() {
            ends[self.order[k].0] = Some(end);
        }
        ends.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::task::kinds;

    fn noop() -> TaskSpec {
        TaskSpec::new(kinds::NOOP, 0)
    }

    #[test]
    fn order_puts_dependencies_first() {
        let mut g = Graph::new();
        let a = g.add(noop());
        let b = g.add(noop());
        let c = g.add(noop());
        g.depend(a, c); // a after c, declared before c exists in the order
        g.depend(b, a);
        let order = g.order().unwrap();
        assert_eq!(order, [c, a, b]);
    }

    #[test]
    fn a_cycle_is_refused_and_named() {
        let mut g = Graph::new();
        let a = g.add(noop());
        let b = g.add_after(noop(), &[a]);
        let c = g.add_after(noop(), &[b]);
        let _free = g.add(noop());
        g.depend(a, c);
        match g.order() {
            Err(GraphError::Cycle(cycle)) => {
                assert_eq!(cycle.len(), 3, "{cycle:?}");
                // Each depends on the next, the last on the first.
                for k in 0..3 {
                    let (x, y) = (cycle[k], cycle[(k + 1) % 3]);
                    assert!(g.nodes[x.0].after.contains(&y), "{cycle:?}");
                }
            }
            other => panic!("{other:?}"),
        }
        let mut g = Graph::new();
        let a = g.add(noop());
        g.depend(a, a);
        assert!(matches!(g.order(), Err(GraphError::Cycle(c)) if c == [a]));
    }

    #[test]
    fn unknown_and_duplicate_dependencies_are_refused() {
        let mut g = Graph::new();
        let a = g.add(noop());
        g.depend(a, NodeId(7));
        assert!(matches!(g.order(), Err(GraphError::UnknownNode { .. })));
        let mut g = Graph::new();
        g.add(noop());
        g.depend(NodeId(3), NodeId(0));
        assert!(matches!(g.order(), Err(GraphError::NoSuchNode(NodeId(3)))));
        let mut g = Graph::new();
        let a = g.add(noop());
        let b = g.add_after(noop(), &[a, a]);
        assert!(
            matches!(g.order(), Err(GraphError::Duplicate { node, twice }) if node == b && twice == a)
        );
    }
}
