//! Task graphs: tasks that wait for others and take their outputs as inputs.
//!
//! A node is an ordinary task record with the edges beside it: the dependencies it still
//! waits on ([`Waiting`]) and the tasks that take its output ([`TaskRecord::dependents`]).
//! A node with dependencies is not pending until the last of them has completed; then its
//! inputs are their outputs, in the order given, and it is queued with the key it got at
//! submission (so a graph's nodes age from when the graph came). An output on edges is
//! kept in the supervisor's keeping once (see [`Stored::keep_parts`]) and shared, without a
//! copy, by the nodes that take it; the last of them to end frees it. A dependency that
//! fails fails its dependents with [`Failure::Dependency`], naming it, unless a dependent
//! tolerates failed dependencies (it then gets an empty input in that place), and so on
//! down the graph, without recursion.
//!
//! Everything happens under the state lock, in the same pass that takes the completion:
//! a dependent is dispatched as soon as its last parent's completion is taken.

use super::error::Error;
use super::state::{Delivery, State, TaskRecord, Timing, Waiting};
use super::stored::Stored;
use super::Supervisor;
use crate::runtime::task::{Failure, Input, Outcome, TaskId, TaskKind, TaskSpec};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// One node of a graph given to [`Supervisor::submit_graph`].
#[derive(Debug)]
pub struct GraphNode {
    /// The task. A node with dependencies takes its inputs from them: its own input must
    /// be [`Input::None`]. A node with dependents hands its output to them: its own
    /// `output` choice applies only when nothing depends on it.
    pub spec: TaskSpec,
    /// The nodes whose outputs are its inputs, in order, by position in the list given to
    /// [`Supervisor::submit_graph`]; each before this node (the list is in topological
    /// order).
    pub after: Vec<usize>,
    /// Whether it runs when a dependency failed, with an empty input in that place,
    /// instead of failing with [`Failure::Dependency`].
    pub tolerate_failed: bool,
}

impl GraphNode {
    /// A node that runs `spec` after `after`.
    pub fn new(spec: TaskSpec, after: Vec<usize>) -> Self {
        Self {
            spec,
            after,
            tolerate_failed: false,
        }
    }
}

/// A graph being run: its nodes' outcomes as they end.
pub struct GraphRun<'s> {
    sup: &'s Supervisor,
    set: u64,
    /// Task ids by node.
    ids: Vec<u64>,
    /// Node by task id, for the nodes not yet joined.
    open: std::collections::HashMap<u64, usize>,
}

impl std::fmt::Debug for GraphRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphRun")
            .field("nodes", &self.ids.len())
            .field("open", &self.open.len())
            .finish()
    }
}

/// One node's end, as [`GraphRun::join_next`] gives it.
#[derive(Debug)]
pub struct NodeEnd {
    /// The node, by position in the list given.
    pub node: usize,
    /// Its task.
    pub id: TaskId,
    /// How it ended. A node with dependents completes with an empty output: its output
    /// went to them.
    pub outcome: Outcome,
    /// When its last attempt was dispatched and when it ended.
    pub timing: Timing,
}

impl GraphRun<'_> {
    /// The task id of `node`.
    pub fn task_id(&self, node: usize) -> Option<TaskId> {
        self.ids.get(node).map(|&id| TaskId(id))
    }

    /// Nodes not yet joined.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// The next node to end, waiting at most `timeout`; `None` when every node has been
    /// joined or the time ran out (tell them apart by [`GraphRun::open`]).
    pub fn join_next(&mut self, timeout: Option<Duration>) -> Option<NodeEnd> {
        if self.open.is_empty() {
            return None;
        }
        let set = self.set;
        let (id, outcome, timing) = self.sup.shared.wait_for(timeout, |st| {
            st.sets
                .get_mut(&set)
                .and_then(std::collections::VecDeque::pop_front)
        })?;
        let node = self.open.remove(&id)?;
        Some(NodeEnd {
            node,
            id: TaskId(id),
            outcome,
            timing,
        })
    }

    /// Waits for every node (at most `timeout` in all) and returns their ends in node
    /// order; `None` if the time ran out first.
    pub fn wait_all(mut self, timeout: Option<Duration>) -> Option<Vec<NodeEnd>> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut ends: Vec<Option<NodeEnd>> = (0..self.ids.len()).map(|_| None).collect();
        while !self.open.is_empty() {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let end = self.join_next(left)?;
            let node = end.node;
            ends[node] = Some(end);
        }
        ends.into_iter().collect()
    }
}

impl Drop for GraphRun<'_> {
    /// Cancels the nodes not yet joined (their dependents fail with them).
    fn drop(&mut self) {
        self.sup.drop_set(self.set, self.open.keys().copied());
    }
}

/// A node taken apart for submission: its input out of its spec.
struct Part {
    node: GraphNode,
    payload: Vec<u8>,
    held: Vec<crate::runtime::task::Held>,
}

impl Supervisor {
    /// Ends a set (a task set or a graph run) dropped by its caller: its open tasks are
    /// cancelled and the outcomes nobody will join let go.
    pub(super) fn drop_set(&self, set: u64, open: impl Iterator<Item = u64>) {
        for id in open {
            self.cancel(TaskId(id));
        }
        let mut st = self.shared.state.lock();
        let unclaimed = st.sets.remove(&set);
        drop(st);
        // Dropped unlocked: an outcome's held output frees itself through the lock.
        drop(unclaimed);
    }

    /// The supervisor's clock: ns since it started, as in [`Timing`].
    pub fn clock_ns(&self) -> u64 {
        self.shared.state.lock().now_ns()
    }

    /// Submits a graph of tasks: each node runs once every node in its `after` has
    /// completed, with their outputs as its inputs. The list must be in topological
    /// order (every `after` names an earlier node), which also makes a cycle impossible:
    /// a node naming itself or a later one is refused with [`Error::BadGraph`], as is a
    /// node with dependencies and input bytes of its own. A node may take held outputs
    /// ([`Input::Held`]): they come first among its inputs, its dependencies' outputs
    /// after them. Every node ends once, through the returned [`GraphRun`].
    pub fn submit_graph(&self, nodes: Vec<GraphNode>) -> Result<GraphRun<'_>, Error> {
        let mut set = 0;
        let ids = self.submit_nodes(nodes, |st| {
            set = st.next_set;
            st.next_set += 1;
            st.sets.insert(set, Default::default());
            Delivery::Set(set)
        })?;
        let open = ids.iter().enumerate().map(|(n, &id)| (id, n)).collect();
        Ok(GraphRun {
            sup: self,
            set,
            ids,
            open,
        })
    }

    /// [`Supervisor::submit_graph`], with every node's outcome going to
    /// [`Supervisor::recv`] like a detached task's, so that a caller running many graphs
    /// (and tasks) at once takes all their ends in one place. The task ids are by node.
    pub fn submit_graph_detached(&self, nodes: Vec<GraphNode>) -> Result<Vec<TaskId>, Error> {
        let n = nodes.len();
        let ids = self.submit_nodes(nodes, |st| {
            st.open_stream += n;
            Delivery::Stream
        })?;
        Ok(ids.into_iter().map(TaskId).collect())
    }

    /// Checks and queues a graph's nodes, all delivered as `delivery` says (called under
    /// the lock once every check has passed); their task ids, by node.
    fn submit_nodes(
        &self,
        nodes: Vec<GraphNode>,
        delivery: impl FnOnce(&mut State) -> Delivery,
    ) -> Result<Vec<u64>, Error> {
        for (i, n) in nodes.iter().enumerate() {
            if let Some(&bad) = n.after.iter().find(|&&p| p >= i) {
                return Err(Error::BadGraph(format!(
                    "node {i} depends on node {bad}, which is not before it (the list must \
                     be in topological order; a cycle cannot be)"
                )));
            }
            if !n.after.is_empty() && matches!(n.spec.input, Input::Bytes(_)) {
                return Err(Error::BadGraph(format!(
                    "node {i} has dependencies and input bytes of its own: its inputs are \
                     held outputs and its dependencies' outputs"
                )));
            }
            let unique: HashSet<usize> = n.after.iter().copied().collect();
            if unique.len() != n.after.len() {
                return Err(Error::BadGraph(format!(
                    "node {i} names a dependency twice"
                )));
            }
        }
        // Taken apart before the lock: should submission fail, held inputs dropped with
        // these locals free themselves through the lock, after it is released.
        let parts: Vec<Part> = nodes
            .into_iter()
            .map(|mut node| {
                let (payload, held) = match std::mem::replace(&mut node.spec.input, Input::None) {
                    Input::None => (Vec::new(), Vec::new()),
                    Input::Bytes(b) => (b, Vec::new()),
                    Input::Held(h) => (Vec::new(), h),
                };
                Part {
                    node,
                    payload,
                    held,
                }
            })
            .collect();
        let sh = &self.shared;
        let mut st = sh.state.lock();
        if st.fatal.is_some() || st.stopping {
            return Err(Error::Stopped);
        }
        let limit = st.lend_limit();
        let owner = st.owner.clone();
        for (i, p) in parts.iter().enumerate() {
            let (kind, payload, held) = (p.node.spec.kind.get(), &p.payload, &p.held);
            if held
                .iter()
                .any(|h| !h.is_of(&owner) || !st.held.contains_key(&h.id))
            {
                return Err(Error::UnknownHeld);
            }
            let len = Stored::lent_len(payload.len(), held.iter().map(|h| &st.held[&h.id])) as u64;
            if len > limit {
                return Err(Error::BadGraph(format!(
                    "node {i}'s input of {len} bytes exceeds the {limit} bytes the page \
                     buffers lend one task"
                )));
            }
            if !sh.served.contains(&kind) || !st.agents.iter().any(|a| a.takes(kind)) {
                return Err(Error::NoAgentForKind(TaskKind(kind)));
            }
        }
        let delivery = delivery(&mut st);
        let mut ids = Vec::with_capacity(parts.len());
        let mut ready = Vec::new();
        for Part {
            node,
            payload,
            held,
        } in parts
        {
            let GraphNode {
                spec,
                after,
                tolerate_failed,
            } = node;
            let id = st.next_id;
            st.next_id += 1;
            let key = st.key_now(spec.priority, sh.cfg.priority_aging_ns());
            let waiting = (!after.is_empty()).then(|| {
                Box::new(Waiting {
                    slots: vec![None; after.len()],
                    left: after.len(),
                    tolerate_failed,
                    feeders: Vec::new(),
                })
            });
            for (pos, &p) in after.iter().enumerate() {
                let parent = ids[p];
                st.tasks
                    .get_mut(&parent)
                    .expect("a node of this graph, not yet run")
                    .dependents
                    .push((id, pos));
            }
            // Taken over: each token leaves the caller's table (checked above).
            let inputs = held
                .into_iter()
                .map(|h| Arc::new(st.held.remove(&h.defuse()).expect("checked above")))
                .collect();
            let mut rec = TaskRecord::new(
                spec.kind.get(),
                spec.arg,
                payload,
                spec.output,
                spec.timeout,
                delivery,
                inputs,
                key,
            );
            rec.waiting = waiting;
            rec.spread = st.join_spread(spec.spread);
            rec.cache_key = spec.cache_key;
            rec.submitted_ns = st.now_ns();
            if rec.waiting.is_none() {
                ready.push(id);
            }
            st.tasks.insert(id, rec);
            ids.push(id);
        }
        // Known only now, with every edge in: which ready nodes are sources.
        for id in ready {
            st.queue_ready(id, &sh.cfg.graph_flow);
        }
        st.admit_sources(&sh.cfg.graph_flow);
        st.dispatch(sh);
        drop(st);
        Ok(ids)
    }
}

impl State {
    /// Hands an ended task's output (`None`: it failed) to its dependents, queueing each
    /// whose last dependency this was; those that must fail now are pushed on `failures`.
    pub(super) fn settle_edges(
        &mut self,
        id: u64,
        dependents: Vec<(u64, usize)>,
        passed: Option<Arc<Stored>>,
        failures: &mut Vec<(u64, Outcome)>,
    ) {
        let limit = self.lend_limit();
        for (t, pos) in dependents {
            let Some(rec) = self.tasks.get_mut(&t) else {
                // It ended already (cancelled, or failed by another dependency).
                if let Some(s) = passed.clone() {
                    self.release_input(s);
                }
                continue;
            };
            let Some(w) = rec.waiting.as_mut() else {
                continue;
            };
            match &passed {
                Some(s) => w.slots[pos] = Some(s.clone()),
                None if w.tolerate_failed => {
                    w.slots[pos] = Some(Arc::new(Stored::Inline(Vec::new())))
                }
                None => {
                    failures.push((
                        t,
                        Outcome::Failed(Failure::Dependency {
                            dependency: TaskId(id),
                        }),
                    ));
                    continue;
                }
            }
            w.left -= 1;
            if w.left == 0 {
                let w = rec.waiting.take().expect("waiting above");
                // Its own held inputs first, then its dependencies' outputs.
                rec.inputs.extend(w.slots.into_iter().flatten());
                // Inputs the page buffers could never lend would wait for ever, and
                // every task behind them: it fails instead.
                let lent = Stored::lent_len(0, rec.inputs.iter().map(|s| &**s)) as u64;
                if lent > limit {
                    failures.push((
                        t,
                        Outcome::Failed(Failure::Task(crate::runtime::task::TaskError::new(
                            "too_large",
                            format!(
                                "its inputs take {lent} bytes, more than the {limit} the page \
                                 buffers lend one task"
                            ),
                        ))),
                    ));
                    continue;
                }
                // Outputs on edges to a task that can run now: what graph flow control
                // weighs before it lets another source in.
                rec.staged = rec.inputs.iter().map(|s| s.len()).sum();
                self.edge_bytes += rec.staged;
                let key = rec.key;
                self.pending.push(t, key);
            }
        }
        if let Some(s) = passed {
            self.release_input(s);
        }
    }

    /// Counts a new task into its spread group; the group's number.
    pub(super) fn join_spread(
        &mut self,
        key: Option<crate::runtime::task::SpreadKey>,
    ) -> Option<u64> {
        let g = key?.get();
        self.spread.entry(g).or_default().1 += 1;
        Some(g)
    }

    /// A task's handler split it (the completion's payload `wire`): its subtasks are
    /// queued, each with the task as its dependent, and the task becomes its merge step,
    /// waiting for them, with the delivery, dependents and place in the order it had. A
    /// split that does not decode, goes too deep, or names a kind no agent takes fails the
    /// task.
    pub(super) fn split(&mut self, id: u64, wire: &[u8]) {
        use crate::runtime::task::{Split, TaskError, MAX_SPLIT_DEPTH, MAX_SPLIT_TASKS};
        let fail = |why: String| Outcome::Failed(Failure::Task(TaskError::new("bad_split", why)));
        let split = match Split::decode(wire) {
            Ok(s) => s,
            Err(e) => return self.finish(id, Outcome::Failed(Failure::Task(e))),
        };
        let Some(rec) = self.tasks.get(&id) else {
            return;
        };
        if rec.root.is_some_and(|r| !self.tasks.contains_key(&r)) {
            // What it would split for has ended (failed by a sibling, or cancelled).
            return self.finish(
                id,
                Outcome::Failed(Failure::Cancelled(
                    "the task it was split from ended".into(),
                )),
            );
        }
        if rec.depth >= MAX_SPLIT_DEPTH {
            return self.finish(
                id,
                fail(format!(
                    "split {MAX_SPLIT_DEPTH} levels deep, the most there may be"
                )),
            );
        }
        let kinds = std::iter::once(split.merge).chain(split.subtasks.iter().map(|s| s.kind));
        for kind in kinds {
            if !self.agents.iter().any(|a| a.takes(kind.get())) {
                return self.finish(id, Outcome::Failed(Failure::UnknownKind(kind)));
            }
        }
        let limit = self.lend_limit();
        if let Some(big) = split.subtasks.iter().find(|s| s.input.len() as u64 > limit) {
            return self.finish(
                id,
                fail(format!(
                    "a subtask's input of {} bytes exceeds the {limit} bytes the page buffers \
                     lend one task",
                    big.input.len()
                )),
            );
        }
        let (key, depth, timeout) = (rec.key, rec.depth + 1, rec.timeout);
        let root = rec.root.unwrap_or(id);
        let n = split.subtasks.len();
        let budget = self.split_budget.entry(root).or_insert(MAX_SPLIT_TASKS);
        if n > *budget {
            return self.finish(
                id,
                fail(format!(
                    "more than {MAX_SPLIT_TASKS} subtasks below one task"
                )),
            );
        }
        *budget -= n;
        let mut ids = Vec::with_capacity(n);
        for (pos, sub) in split.subtasks.into_iter().enumerate() {
            let sid = self.next_id;
            self.next_id += 1;
            let mut r = TaskRecord::new(
                sub.kind.get(),
                sub.arg,
                sub.input,
                crate::runtime::task::Output::Return,
                timeout,
                Delivery::Internal,
                Vec::new(),
                key,
            );
            r.dependents.push((id, pos));
            r.depth = depth;
            r.root = Some(root);
            r.submitted_ns = self.now_ns();
            self.tasks.insert(sid, r);
            ids.push(sid);
        }
        // The task becomes its merge step: what it was lent and took is done with.
        let mut rec = self.tasks.remove(&id).expect("looked up above");
        if let Some((_, handles)) = rec.lent.take() {
            self.slab
                .release_handles(&handles, crate::shm::slab::Owner::Supervisor);
            self.lent_buffers -= handles.len();
        }
        for input in std::mem::take(&mut rec.inputs) {
            self.release_input(input);
        }
        // Still a source, if it was one, until its merge ends; its inputs are let go.
        self.leave_flow(false, std::mem::take(&mut rec.staged));
        rec.kind = split.merge.get();
        rec.arg = split.merge_arg;
        rec.payload = Vec::new();
        rec.attempt = 1;
        rec.blame.clear();
        rec.suspect = false;
        rec.waiting = (n > 0).then(|| {
            Box::new(Waiting {
                slots: vec![None; n],
                left: n,
                tolerate_failed: false,
                feeders: ids.clone(),
            })
        });
        let ready = rec.waiting.is_none();
        self.tasks.insert(id, rec);
        self.counters.tasks_split += 1;
        if ready {
            self.pending.push(id, key);
        }
        for sid in ids {
            self.pending.push(sid, key);
        }
    }

    /// Lets one holder of an input go: the last frees it.
    pub(super) fn release_input(&self, input: Arc<Stored>) {
        if let Ok(stored) = Arc::try_unwrap(input) {
            stored.release(&self.slab);
        }
    }

    /// The most bytes one task may be lent: half the supervisor's pool.
    pub(super) fn lend_limit(&self) -> u64 {
        u64::from(self.slab.capacity(crate::shm::slab::Owner::Supervisor) / 2)
            * self.slab.buffer_size() as u64
    }

    /// The pending-order key of a task submitted now with `priority`.
    pub(super) fn key_now(&self, priority: i32, aging_ns: u64) -> i64 {
        super::pending::Pending::key(self.now_ns(), priority, aging_ns)
    }

    /// Nanoseconds since the supervisor started.
    pub(super) fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
    }
}
