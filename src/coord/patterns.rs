//! Patterns over task graphs: map-reduce, pipeline, scatter-gather and vote.
//!
//! Each builds a [`Graph`] (or a set of independent nodes) and runs it on a supervisor;
//! outputs travel along the edges in the supervisor's page buffers, not through the
//! caller. Handlers read their inputs with `ctx.inputs()`, one or several alike.

use super::graph::{Graph, GraphError, NodeId};
use crate::runtime::supervisor::{GraphNode, NodeEnd, Supervisor};
use crate::runtime::task::{Failure, Outcome, SpreadKey, TaskId, TaskKind, TaskSpec};
use std::time::{Duration, Instant};

/// Why a pattern gave no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The graph was refused.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The supervisor refused a task.
    #[error(transparent)]
    Supervisor(#[from] crate::runtime::supervisor::Error),
    /// A task failed, and with it the result.
    #[error("task {task} failed: {failure}")]
    Failed {
        /// The task that failed first (its dependents failed with it).
        task: TaskId,
        /// Why.
        failure: Failure,
    },
    /// The time given ran out.
    #[error("timed out with {open} tasks open")]
    TimedOut {
        /// Tasks not ended.
        open: usize,
    },
    /// Fewer outputs than the quorum arrived, or none reached the vote's threshold.
    #[error("{0}")]
    NoQuorum(String),
}

/// The output of a completed node, or the failure that stopped it: the first failure
/// down a chain of [`Failure::Dependency`] is the one reported.
fn output_of(ends: &[NodeEnd], node: usize) -> Result<Vec<u8>, PatternError> {
    let mut at = &ends[node];
    loop {
        match &at.outcome {
            Outcome::Completed { output, .. } => return Ok(output.clone()),
            Outcome::Failed(Failure::Dependency { dependency }) => {
                match ends.iter().find(|e| e.id == *dependency) {
                    Some(dep) => at = dep,
                    None => {
                        return Err(PatternError::Failed {
                            task: at.id,
                            failure: Failure::Dependency {
                                dependency: *dependency,
                            },
                        })
                    }
                }
            }
            Outcome::Failed(f) => {
                return Err(PatternError::Failed {
                    task: at.id,
                    failure: f.clone(),
                })
            }
        }
    }
}

/// Map-reduce: `map` on each input, then `reduce` over the map outputs, as a tree of
/// `fan_in` inputs a node when there are more. `reduce` must be associative (its output
/// of the same form as its inputs), and the reduce of one value is that value: a group of
/// one is passed up a level as it is.
#[derive(Debug, Clone, Copy)]
pub struct MapReduce {
    /// The map kind: one input's bytes in, one output.
    pub map: TaskKind,
    /// The reduce kind: several outputs in (`ctx.inputs()`), one out.
    pub reduce: TaskKind,
    /// Inputs per reduce node (at least 2; default 16).
    pub fan_in: usize,
}

impl MapReduce {
    /// Map by `map`, reduce by `reduce`, 16 inputs a reduce node.
    pub fn new(map: TaskKind, reduce: TaskKind) -> Self {
        Self {
            map,
            reduce,
            fan_in: 16,
        }
    }

    /// The graph for `inputs` and its root (`None` for no inputs).
    pub fn graph(&self, inputs: Vec<Vec<u8>>) -> (Graph, Option<NodeId>) {
        let mut g = Graph::new();
        let mut level: Vec<NodeId> = inputs
            .into_iter()
            .map(|b| g.add(TaskSpec::new(self.map, 0).with_bytes(b)))
            .collect();
        let fan_in = self.fan_in.max(2);
        while level.len() > 1 {
            level = level
                .chunks(fan_in)
                .map(|group| match group {
                    [one] => *one,
                    many => g.add_after(TaskSpec::new(self.reduce, 0), many),
                })
                .collect();
        }
        let root = level.first().copied();
        (g, root)
    }

    /// Runs it: the root's output. With no inputs, the reduce of nothing (one reduce task
    /// with no inputs).
    pub fn run(
        &self,
        sup: &Supervisor,
        inputs: Vec<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, PatternError> {
        let (mut g, root) = self.graph(inputs);
        let root = root.unwrap_or_else(|| g.add(TaskSpec::new(self.reduce, 0)));
        let open = g.len();
        let ends = g
            .submit(sup)?
            .wait_all(timeout)
            .ok_or(PatternError::TimedOut { open })?;
        output_of(&ends, root.0)
    }
}

/// A pipeline: each input goes through the stages in order, each stage's output the next
/// one's input; inputs flow through at once, so the stages overlap.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The stages' kinds, in order (at least one).
    pub stages: Vec<TaskKind>,
}

impl Pipeline {
    /// Stages in order.
    pub fn new(stages: Vec<TaskKind>) -> Self {
        Self { stages }
    }

    /// The graph for `inputs` and the last stage's node for each.
    pub fn graph(&self, inputs: Vec<Vec<u8>>) -> (Graph, Vec<NodeId>) {
        let mut g = Graph::new();
        let mut lasts = Vec::with_capacity(inputs.len());
        for input in inputs {
            let mut stages = self.stages.iter();
            let Some(&first) = stages.next() else {
                continue;
            };
            let mut at = g.add(TaskSpec::new(first, 0).with_bytes(input));
            for &kind in stages {
                at = g.add_after(TaskSpec::new(kind, 0), &[at]);
            }
            lasts.push(at);
        }
        (g, lasts)
    }

    /// Runs it: each input's result, in input order.
    pub fn run(
        &self,
        sup: &Supervisor,
        inputs: Vec<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<Vec<Result<Vec<u8>, PatternError>>, PatternError> {
        let (g, lasts) = self.graph(inputs);
        let open = g.len();
        let ends = g
            .submit(sup)?
            .wait_all(timeout)
            .ok_or(PatternError::TimedOut { open })?;
        Ok(lasts.iter().map(|n| output_of(&ends, n.0)).collect())
    }
}

/// One copy's output, as gathered.
#[derive(Debug, Clone)]
pub struct CopyOutput {
    /// Which copy.
    pub copy: usize,
    /// The agent slot that ran it.
    pub slot: u32,
    /// Its output.
    pub output: Vec<u8>,
}

/// What a scatter-gather or a vote gathered.
#[derive(Debug)]
pub struct Gathered {
    /// The outputs that came, in the order they came.
    pub outputs: Vec<CopyOutput>,
    /// Copies that failed, with why.
    pub failed: Vec<(usize, Failure)>,
    /// Copies still running when the gather ended (cancelled).
    pub cancelled: Vec<usize>,
}

/// Scatter-gather: one input to `copies` tasks, each on a different agent while there
/// are agents enough, gathered until `quorum` outputs have come or `deadline` passes; the
/// rest are cancelled.
#[derive(Debug, Clone, Copy)]
pub struct ScatterGather {
    /// The kind.
    pub kind: TaskKind,
    /// Its argument.
    pub arg: u64,
    /// Tasks to run.
    pub copies: usize,
    /// Outputs to wait for (default: all copies).
    pub quorum: Option<usize>,
    /// Longest to wait (default: as long as it takes).
    pub deadline: Option<Duration>,
}

impl ScatterGather {
    /// `copies` tasks of `kind`, waiting for all.
    pub fn new(kind: TaskKind, copies: usize) -> Self {
        Self {
            kind,
            arg: 0,
            copies,
            quorum: None,
            deadline: None,
        }
    }

    /// Runs it on `input`. Errs only when the supervisor refuses; fewer outputs than the
    /// quorum is for the caller to judge from what came.
    pub fn run(&self, sup: &Supervisor, input: &[u8]) -> Result<Gathered, PatternError> {
        let spread = SpreadKey::new();
        let nodes = (0..self.copies)
            .map(|_| {
                GraphNode::new(
                    TaskSpec::new(self.kind, self.arg)
                        .with_bytes(input.to_vec())
                        .spread_by(spread),
                    Vec::new(),
                )
            })
            .collect();
        let quorum = self.quorum.unwrap_or(self.copies).min(self.copies);
        let deadline = self.deadline.map(|d| Instant::now() + d);
        let mut run = sup.submit_graph(nodes)?;
        let mut got = Gathered {
            outputs: Vec::new(),
            failed: Vec::new(),
            cancelled: Vec::new(),
        };
        let mut ended = vec![false; self.copies];
        // Until the quorum has come, or can no longer come.
        while got.outputs.len() < quorum && got.outputs.len() + run.open() >= quorum {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                break;
            }
            let Some(end) = run.join_next(left) else {
                break;
            };
            ended[end.node] = true;
            match end.outcome {
                Outcome::Completed { output, slot, .. } => got.outputs.push(CopyOutput {
                    copy: end.node,
                    slot,
                    output,
                }),
                Outcome::Failed(f) => got.failed.push((end.node, f)),
            }
        }
        got.cancelled = (0..self.copies).filter(|&c| !ended[c]).collect();
        // Dropping the run cancels the copies still open.
        drop(run);
        Ok(got)
    }
}

/// Consensus by vote: the same input on `k` agents; the output that at least `threshold`
/// of them returned byte for byte is accepted, and the others are reported.
#[derive(Debug, Clone, Copy)]
pub struct Vote {
    /// The kind.
    pub kind: TaskKind,
    /// Its argument.
    pub arg: u64,
    /// Agents to run it on.
    pub k: usize,
    /// Equal outputs needed to accept one.
    pub threshold: usize,
    /// Longest to wait for the votes.
    pub deadline: Option<Duration>,
}

/// A vote's result.
#[derive(Debug)]
pub struct Verdict {
    /// The accepted output.
    pub output: Vec<u8>,
    /// The copies that returned it.
    pub agreed: Vec<usize>,
    /// The copies that returned something else, with what.
    pub dissent: Vec<(usize, Vec<u8>)>,
    /// The copies that failed or did not end in time.
    pub missing: Vec<usize>,
}

impl Vote {
    /// `k` copies of `kind`, accepting an output `threshold` of them agree on.
    pub fn new(kind: TaskKind, k: usize, threshold: usize) -> Self {
        Self {
            kind,
            arg: 0,
            k,
            threshold,
            deadline: None,
        }
    }

    /// Runs it on `input`: the accepted output and who agreed, or
    /// [`PatternError::NoQuorum`] saying how the votes fell.
    pub fn run(&self, sup: &Supervisor, input: &[u8]) -> Result<Verdict, PatternError> {
        let sg = ScatterGather {
            kind: self.kind,
            arg: self.arg,
            copies: self.k,
            quorum: None,
            deadline: self.deadline,
        };
        let got = sg.run(sup, input)?;
        // Tally equal outputs, first come first.
        let mut tally: Vec<(&[u8], Vec<usize>)> = Vec::new();
        for c in &got.outputs {
            match tally.iter_mut().find(|(o, _)| *o == c.output.as_slice()) {
                Some((_, who)) => who.push(c.copy),
                None => tally.push((&c.output, vec![c.copy])),
            }
        }
        let missing: Vec<usize> = got
            .failed
            .iter()
            .map(|(c, _)| *c)
            .chain(got.cancelled.iter().copied())
            .collect();
        // The largest tally; on a tie the first to come (`max_by_key` keeps the last).
        let best = tally.iter().rev().max_by_key(|(_, who)| who.len());
        match best {
            Some((out, who)) if who.len() >= self.threshold.max(1) => Ok(Verdict {
                output: out.to_vec(),
                agreed: who.clone(),
                dissent: got
                    .outputs
                    .iter()
                    .filter(|c| !who.contains(&c.copy))
                    .map(|c| (c.copy, c.output.clone()))
                    .collect(),
                missing,
            }),
            _ => Err(PatternError::NoQuorum(format!(
                "no output reached {} of {} votes: {} distinct outputs (largest {}), {} \
                 failed or late",
                self.threshold,
                self.k,
                tally.len(),
                best.map_or(0, |(_, w)| w.len()),
                missing.len()
            ))),
        }
    }
}
