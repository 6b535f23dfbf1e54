//! Graph flow control: how much of a graph runs ahead of what consumes its outputs.
//!
//! A graph whose first nodes are quick and whose later ones are slow (a parser feeding an
//! extractor) would otherwise run every first node at once, and keep all their outputs
//! until the slow stage gets to them. With [`GraphFlow`] set, a graph's *sources* (nodes
//! with no inputs at all whose output goes to other nodes) wait in their own queue, in the
//! pending order, and are let in only while fewer than [`GraphFlow::sources`] run (from
//! being let in until they end) and the outputs on edges to nodes that can run now (queued
//! or running, not still waiting for other dependencies) take less than
//! [`GraphFlow::edge_bytes`]. Outputs at a node that still waits for others are not
//! counted: they wait for sources, which a count of them could then hold back for ever.
//! Every other node is queued as soon as it can run, so what holds the edges' outputs
//! always runs, and a source waits at most until it has.

use super::state::State;

/// Flow-control limits for graphs ([`SupervisorBuilder::graph_flow`]); `None` is no limit.
///
/// [`SupervisorBuilder::graph_flow`]: super::SupervisorBuilder::graph_flow
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphFlow {
    /// Sources running at most, across all graphs.
    pub sources: Option<usize>,
    /// Bytes of outputs on edges to runnable nodes above which no source is let in.
    pub edge_bytes: Option<u64>,
}

impl GraphFlow {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.sources.is_some() || self.edge_bytes.is_some()
    }
}

impl State {
    /// Queues a graph node that can run now: a source under flow control waits for
    /// [`State::admit_sources`], anything else is pending at once.
    pub(super) fn queue_ready(&mut self, id: u64, flow: &GraphFlow) {
        let Some(rec) = self.tasks.get(&id) else {
            return;
        };
        let source = rec.inputs.is_empty() && !rec.dependents.is_empty();
        if flow.is_set() && source {
            self.sources.insert((rec.key, id));
        } else {
            self.pending.push(id, rec.key);
        }
    }

    /// Lets waiting sources in, in the pending order, while the limits allow. A source
    /// that ended meanwhile (cancelled) is passed over.
    pub(super) fn admit_sources(&mut self, flow: &GraphFlow) {
        while let Some(&(key, id)) = self.sources.first() {
            let full = flow.sources.is_some_and(|n| self.sources_running >= n)
                || flow.edge_bytes.is_some_and(|b| self.edge_bytes >= b);
            if full {
                break;
            }
            self.sources.pop_first();
            let Some(rec) = self.tasks.get_mut(&id) else {
                continue;
            };
            rec.source = true;
            self.sources_running += 1;
            self.pending.push(id, key);
        }
    }

    /// What an ending task leaves of flow control's counts.
    pub(super) fn leave_flow(&mut self, source: bool, staged: u64) {
        self.edge_bytes -= staged;
        if source {
            self.sources_running -= 1;
        }
    }
}
