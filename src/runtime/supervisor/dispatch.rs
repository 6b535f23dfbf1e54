//! Taking tasks in and handing them to agents: submit, the dispatch rule, descriptors
//! and the payloads lent with them.

use super::error::Error;
use super::state::{Delivery, InFlight, Phase, Shared, State, TaskRecord};
use super::stored::Stored;
use crate::runtime::task::{flags, Input, TaskKind, TaskSpec};
use crate::shm::descriptor::Descriptor;
use crate::shm::segment::Direction;
use crate::shm::slab::{Owner, PageHandle};
use std::sync::Arc;

impl Shared {
    pub(super) fn submit(&self, spec: TaskSpec, delivery: Delivery) -> Result<u64, Error> {
        let TaskSpec {
            kind,
            arg,
            input,
            output,
            timeout,
            priority,
            spread,
            cache_key,
        } = spec;
        let kind = kind.get();
        // Taken out before the lock: should submit fail, held inputs dropped with these
        // locals free themselves through the lock, after it is released.
        let (payload, inputs) = match input {
            Input::None => (Vec::new(), Vec::new()),
            Input::Bytes(b) => (b, Vec::new()),
            Input::Held(h) => (Vec::new(), h),
        };
        let mut st = self.state.lock();
        if st.pending.len() >= self.cfg.max_pending {
            drop(st);
            self.wait_for(None, |st| {
                (st.fatal.is_some() || st.stopping || st.pending.len() < self.cfg.max_pending)
                    .then_some(())
            });
            st = self.state.lock();
        }
        if st.fatal.is_some() || st.stopping {
            return Err(Error::Stopped);
        }
        if !self.served.contains(&kind) || !st.agents.iter().any(|a| a.takes(kind)) {
            return Err(Error::NoAgentForKind(TaskKind(kind)));
        }
        let owner = st.owner.clone();
        if inputs
            .iter()
            .any(|h| !h.is_of(&owner) || !st.held.contains_key(&h.id))
        {
            return Err(Error::UnknownHeld);
        }
        // What will be lent to the agent: the payload, or the inputs unless one chain
        // goes as it is. More than the slab can lend would wait for ever, and every task
        // behind it with it.
        let lent = Stored::lent_len(payload.len(), inputs.iter().map(|h| &st.held[&h.id])) as u64;
        let (buffers, buffer_size) = (
            st.slab.capacity(Owner::Supervisor),
            st.slab.buffer_size() as u32,
        );
        let limit = st.lend_limit();
        if lent > limit {
            return Err(Error::PayloadTooLarge {
                len: lent,
                limit,
                buffers,
                buffer_size,
            });
        }
        // Taken over: each token leaves the caller's table (a Held is one of a kind, so
        // none can be given twice).
        let inputs = inputs
            .into_iter()
            .map(|h| Arc::new(st.held.remove(&h.defuse()).expect("checked above")))
            .collect();
        let id = st.next_id;
        st.next_id += 1;
        let key = st.key_now(priority, self.cfg.priority_aging_ns());
        if delivery == Delivery::Stream {
            st.open_stream += 1;
        }
        let mut rec = TaskRecord::new(kind, arg, payload, output, timeout, delivery, inputs, key);
        rec.spread = st.join_spread(spread);
        rec.cache_key = cache_key;
        rec.submitted_ns = st.now_ns();
        st.tasks.insert(id, rec);
        st.pending.push(id, key);
        st.dispatch(self);
        Ok(id)
    }
}

impl State {
    pub(super) fn dispatch(&mut self, sh: &Shared) {
        if self.pending.is_empty() || self.stopping || self.fatal.is_some() {
            return;
        }
        if self.strategy.is_some() {
            return self.dispatch_by_strategy(sh);
        }
        let n = self.agents.len();
        let depth = sh.cfg.queue_depth as usize;
        let ready = self
            .agents
            .iter()
            .filter(|a| a.phase == Phase::Ready && a.in_flight.len() < depth)
            .count();
        if ready == 0 {
            return;
        }
        let share = self.pending.len().div_ceil(ready).max(1);
        // Least-loaded first; ties go to the lowest slot, so a trickle of tasks keeps one
        // agent hot (spinning) instead of waking a different sleeping agent each time.
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(0..n);
        order.sort_by_key(|&i| self.agents[i].in_flight.len());
        let mut batch = std::mem::take(&mut self.scratch);
        for &i in &order {
            if self.pending.is_empty() {
                break;
            }
            let a = &self.agents[i];
            if a.phase != Phase::Ready || a.in_flight.len() >= depth {
                continue;
            }
            // A suspect runs alone: nothing joins it on its agent.
            if a.runs_suspect(&self.tasks) {
                continue;
            }
            let idle = a.in_flight.is_empty();
            let room = (depth - a.in_flight.len()).min(share);
            let mut pass_on = false;
            batch.clear();
            if a.kinds.is_none() {
                while batch.len() < room {
                    let Some(id) = self.pending.front() else {
                        break;
                    };
                    let (suspect, spread, kind) = self
                        .tasks
                        .get(&id)
                        .map_or((false, None, 0), |t| (t.suspect, t.spread, t.kind));
                    if suspect && !(idle && batch.is_empty()) {
                        break; // it waits for an agent with nothing else
                    }
                    if !self.spread_allows(spread, kind, i, &batch) {
                        // One of its group is here already: another agent takes it.
                        pass_on = true;
                        break;
                    }
                    match self.descriptor(id) {
                        Some(d) => {
                            self.pending.pop_front();
                            batch.push(d);
                        }
                        None => break, // no slab credit for its payload now
                    }
                    if suspect {
                        break;
                    }
                }
            } else {
                // A specialist: the first pending tasks of the kinds it takes.
                let agent = &self.agents[i];
                let tasks = &self.tasks;
                let mine: Vec<(u64, bool, Option<u64>, u32)> = self
                    .pending
                    .iter()
                    .filter_map(|id| {
                        let t = tasks.get(&id)?;
                        agent
                            .takes(t.kind)
                            .then_some((id, t.suspect, t.spread, t.kind))
                    })
                    .take(room + 1)
                    .collect();
                for (id, suspect, spread, kind) in mine {
                    if batch.len() >= room {
                        break;
                    }
                    if (suspect && !(idle && batch.is_empty()))
                        || !self.spread_allows(spread, kind, i, &batch)
                    {
                        continue;
                    }
                    match self.descriptor(id) {
                        Some(d) => {
                            self.pending.remove(id);
                            batch.push(d);
                        }
                        None => break,
                    }
                    if suspect {
                        break;
                    }
                }
            }
            if batch.is_empty() {
                if self.agents[i].kinds.is_some() || pass_on {
                    continue; // nothing for it; the next agent may take others
                }
                break;
            }
            self.send(i, &batch);
        }
        self.scratch = batch;
        self.order = order;
    }

    /// Pushes `batch` onto agent `i`'s ring and records it in flight; what the ring did
    /// not take goes back to the front of the pending order.
    fn send(&mut self, i: usize, batch: &[Descriptor]) {
        let pushed = match self.agents[i].tx.as_mut().map(|tx| tx.push_batch(batch)) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.ring_fault(i, Direction::ToAgent, e);
                0
            }
            None => 0,
        };
        let now = self.now_ns();
        if pushed > 0 {
            self.agents[i].idle_since = None;
        }
        for d in &batch[..pushed] {
            self.agents[i].in_flight.push_back(InFlight {
                id: d.task_id,
                attempt: d.attempt,
            });
            if let Some(t) = self.tasks.get_mut(&d.task_id) {
                t.dispatched_ns = now;
                if let Some(g) = t.spread.and_then(|g| self.spread.get_mut(&g)) {
                    g.0.insert(self.agents[i].slot);
                }
            }
        }
        for d in batch[pushed..].iter().rev() {
            self.pending.push_front(d.task_id);
        }
    }

    /// Dispatch by a [`Strategy`](super::strategy::Strategy): task by task in the pending
    /// order, each to the candidate the strategy picks among the agents that could take
    /// it. A task no agent could take (none ready serves its kind) is passed over, at most
    /// 64 of them a round; one whose pick has no room waits, and the tasks behind it with
    /// it, until room opens (the order is the strategy's to keep).
    fn dispatch_by_strategy(&mut self, sh: &Shared) {
        let depth = sh.cfg.queue_depth as usize;
        let Some(mut strategy) = self.strategy.take() else {
            return;
        };
        let mut batches: Vec<Vec<Descriptor>> = vec![Vec::new(); self.agents.len()];
        // Agents given a suspect this round: it runs alone.
        let mut lone = vec![false; self.agents.len()];
        let mut passed = Vec::new();
        // The candidates for one task, and the agent each is, reused task after task.
        let mut candidates: Vec<super::strategy::Candidate> = Vec::with_capacity(self.agents.len());
        let mut agent_of: Vec<usize> = Vec::with_capacity(self.agents.len());
        let mut skipped = 0;
        while let Some((key, id)) = self.pending.pop_entry() {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            let (kind, suspect, spread) = (t.kind, t.suspect, t.spread);
            candidates.clear();
            agent_of.clear();
            for (i, a) in self.agents.iter().enumerate() {
                let queued = a.in_flight.len() + batches[i].len();
                if a.phase == Phase::Ready
                    && a.takes(kind)
                    && self.spread_allows(spread, kind, i, &batches[i])
                {
                    let alone = a.runs_suspect(&self.tasks) || lone[i];
                    let room = queued < depth && !alone && (!suspect || queued == 0);
                    candidates.push(super::strategy::Candidate {
                        slot: a.slot,
                        queued,
                        room,
                    });
                    agent_of.push(i);
                }
            }
            if candidates.is_empty() {
                passed.push((key, id));
                skipped += 1;
                if skipped >= 64 {
                    break;
                }
                continue;
            }
            let pick = strategy
                .pick(TaskKind(kind), &candidates)
                .filter(|&k| k < candidates.len() && candidates[k].room);
            let Some(pick) = pick else {
                // It waits, and the tasks behind it with it, until room opens.
                passed.push((key, id));
                break;
            };
            let i = agent_of[pick];
            match self.descriptor(id) {
                Some(d) => {
                    batches[i].push(d);
                    lone[i] |= suspect;
                }
                None => {
                    passed.push((key, id)); // no slab credit for its payload now
                    break;
                }
            }
        }
        for (key, id) in passed {
            self.pending.push(id, key);
        }
        for (i, batch) in batches.iter().enumerate() {
            if !batch.is_empty() {
                self.send(i, batch);
            }
        }
        self.strategy = Some(strategy);
    }

    /// Whether a task of spread group `spread` (and of `kind`) may go to agent `i`, with
    /// `batch` about to go there too: not while it has had one of the group, unless every
    /// agent that could take it (running, serving its kind) has.
    fn spread_allows(
        &self,
        spread: Option<u64>,
        kind: u32,
        i: usize,
        batch: &[Descriptor],
    ) -> bool {
        let Some(g) = spread else {
            return true;
        };
        let Some((slots, _)) = self.spread.get(&g) else {
            return true;
        };
        let in_batch = batch.iter().any(|d| {
            self.tasks
                .get(&d.task_id)
                .is_some_and(|t| t.spread == spread)
        });
        if !slots.contains(&self.agents[i].slot) && !in_batch {
            return true;
        }
        // Had one: only if no other agent that could take it has not.
        !self.agents.iter().enumerate().any(|(j, a)| {
            j != i && a.takes(kind) && a.phase.is_running() && !slots.contains(&a.slot)
        })
    }

    /// The descriptor for a task's next attempt, lending its payload (or its input list)
    /// if it has one and the slab has credit: at most half the buffers are lent, so agents
    /// always have room for their outputs. A payload is written into the slab once, at its
    /// first attempt, and lent again to later ones.
    pub(super) fn descriptor(&mut self, id: u64) -> Option<Descriptor> {
        let half = self.slab.capacity(Owner::Supervisor) as usize / 2;
        let bs = self.slab.buffer_size();
        let rec = self.tasks.get_mut(&id)?;
        let mut d = Descriptor::new(id, rec.attempt, rec.kind);
        d.arg = rec.arg;
        d.buffer = PageHandle::NIL_RAW;
        if let [one] = &rec.inputs[..] {
            d.flags |= flags::ONE_INPUT;
            if let Stored::Chain { len, handles } = &**one {
                // One held input becomes the input as it is, without a copy.
                d.buffer = handles[0].to_raw();
                d.len = *len;
                return Some(d);
            }
        }
        if rec.inputs.len() > 1 {
            d.flags |= flags::INPUT_LIST;
        }
        if rec.lent.is_none() {
            // The credit is checked before an input list is built, so a task waiting for
            // credit does not build its list again at every dispatch.
            let n = Stored::lent_len(rec.payload.len(), rec.inputs.iter().map(|s| &**s));
            if n == 0 {
                return Some(d);
            }
            let parts = n.div_ceil(bs);
            if self.lent_buffers + parts > half && self.lent_buffers > 0 {
                return None;
            }
            let list;
            let inputs: Vec<&Stored> = rec.inputs.iter().map(|s| &**s).collect();
            let bytes: &[u8] = match inputs[..] {
                [] => &rec.payload,
                [Stored::Inline(b)] => b,
                ref many => {
                    let mut l = Vec::with_capacity(n);
                    for input in many {
                        input.write_list_entry(&mut l);
                    }
                    list = l;
                    &list
                }
            };
            let handles = self
                .slab
                .write_payload_handles(Owner::Supervisor, bytes)
                .ok()?;
            self.lent_buffers += handles.len();
            rec.lent = Some((bytes.len() as u64, handles));
        }
        let (len, handles) = rec.lent.as_ref().expect("lent above");
        d.buffer = handles[0].to_raw();
        d.len = *len;
        Some(d)
    }
}
