//! Completions from agents: checked, taken over or copied out, and delivered.

use super::state::{Delivery, State, TaskRecord, Timing};
use super::stored::Stored;
use crate::runtime::task::{status, DeathCause, Failure, Outcome, TaskError, TaskKind};
use crate::shm::descriptor::Descriptor;
use crate::shm::segment::Direction;
use crate::shm::slab::Owner;
use std::sync::Arc;
use std::time::Duration;

impl State {
    pub(super) fn take_completions(&mut self, i: usize) {
        let mut buf = std::mem::take(&mut self.scratch);
        loop {
            buf.clear();
            let Some(rx) = self.agents[i].rx.as_mut() else {
                break;
            };
            match rx.pop_batch(&mut buf, 256) {
                Ok(0) => break,
                Ok(_) => {
                    for d in &buf {
                        self.on_completion(i, d);
                    }
                }
                Err(e) => {
                    self.ring_fault(i, Direction::FromAgent, e);
                    break;
                }
            }
        }
        self.scratch = buf;
    }

    pub(super) fn on_completion(&mut self, i: usize, d: &Descriptor) {
        if d.kind == status::PUBLISH {
            return self.relay(i, d);
        }
        if d.kind == status::STATE {
            return self.state_request(i, d);
        }
        let slot = self.agents[i].slot;
        let agent = &mut self.agents[i];
        let pos = agent
            .in_flight
            .iter()
            .position(|f| f.id == d.task_id && f.attempt == d.attempt);
        let Some(pos) = pos else {
            // Unknown task, or a stale attempt: discard, freeing what it carried.
            self.counters.stale_completions += 1;
            if let Some(raw) = d.payload() {
                if let Ok(handles) =
                    self.slab
                        .claim_chain(raw, d.len, Owner::Agent(slot), Owner::Supervisor)
                {
                    self.slab.release_handles(&handles, Owner::Supervisor);
                }
            }
            return;
        };
        // Kept: for the caller (`Output::Hold`), or for the graph nodes that take it.
        let (for_caller, on_edges) = self.tasks.get(&d.task_id).map_or((false, false), |t| {
            (t.output.is_held(), !t.dependents.is_empty())
        });
        let keep = d.kind == status::OK && (for_caller || on_edges);
        let mut held = None;
        let mut output = Vec::new();
        if let Some(raw) = d.payload() {
            // Checked and taken over from the agent's pool, then copied out of it (to the
            // caller, or to be kept: see `Stored::keep_parts`) and its buffers freed, so the
            // agent has its room back and cannot change what it handed over.
            let taken = self
                .slab
                .claim_chain(raw, d.len, Owner::Agent(slot), Owner::Supervisor)
                .and_then(|handles| {
                    let parts = self
                        .slab
                        .handle_segments(&handles, d.len, Owner::Supervisor);
                    let got = parts.map(|parts| {
                        if keep {
                            held = Some(Stored::keep_parts(&self.slab, &parts));
                        } else {
                            output = parts.concat();
                        }
                    });
                    self.slab.release_handles(&handles, Owner::Supervisor);
                    got
                });
            if let Err(e) = taken {
                // The agent broke the protocol: kill it; the task it ran is blamed and the
                // rest of its in-flight work requeued.
                tracing::warn!(slot, task = d.task_id, "bad completion payload: {e}");
                self.kill(i, DeathCause::Protocol);
                return;
            }
        }
        let kept =
            keep.then(|| held.unwrap_or_else(|| Stored::Inline(std::mem::take(&mut output))));
        let (held, edge) = if on_edges {
            (None, kept)
        } else {
            (kept.map(|stored| self.keep(stored)), None)
        };
        let agent = &mut self.agents[i];
        agent.in_flight.remove(pos);
        agent.completed += 1;
        if agent.current.is_some_and(|(id, _)| id == d.task_id) {
            agent.current = None;
        }
        if d.kind == status::SPLIT {
            self.split(d.task_id, &output);
            return;
        }
        let (attempts, kind) = self
            .tasks
            .get(&d.task_id)
            .map_or((1, 0), |t| (t.attempt, t.kind));
        if let Some(s) = self.strategy.as_mut() {
            s.observe(slot, TaskKind(kind), Duration::from_nanos(d.arg));
        }
        let outcome = match d.kind {
            status::OK => Outcome::Completed {
                output,
                held,
                run_time: Duration::from_nanos(d.arg),
                slot,
                attempts,
            },
            status::UNKNOWN_KIND => Outcome::Failed(Failure::UnknownKind(TaskKind(
                self.tasks.get(&d.task_id).map_or(0, |t| t.kind),
            ))),
            status::PANICKED => Outcome::Failed(Failure::Panicked(
                String::from_utf8_lossy(&output).into_owned(),
            )),
            _ => Outcome::Failed(Failure::Task(TaskError::decode(&output))),
        };
        self.finish_with(d.task_id, outcome, edge);
    }

    /// Ends a task: frees its lent payload and delivers its outcome. Each task ends once.
    pub(super) fn finish(&mut self, id: u64, outcome: Outcome) {
        self.finish_with(id, outcome, None);
    }

    /// [`State::finish`], with the output a graph node hands to its dependents (`None`
    /// for a failure, or for a node without dependents). Dependents that fail with it end
    /// here too, in a loop, however deep the graph.
    pub(super) fn finish_with(&mut self, id: u64, outcome: Outcome, edge: Option<Stored>) {
        let mut ending = vec![(id, outcome, edge)];
        while let Some((id, outcome, edge)) = ending.pop() {
            let Some(mut rec) = self.tasks.remove(&id) else {
                if let Some(stored) = edge {
                    stored.release(&self.slab);
                }
                continue;
            };
            if !rec.dependents.is_empty() {
                let passed = outcome
                    .is_completed()
                    .then(|| Arc::new(edge.unwrap_or(Stored::Inline(Vec::new()))));
                let dependents = std::mem::take(&mut rec.dependents);
                let mut failing = Vec::new();
                self.settle_edges(id, dependents, passed, &mut failing);
                ending.extend(failing.into_iter().map(|(t, o)| (t, o, None)));
            } else if let Some(stored) = edge {
                stored.release(&self.slab);
            }
            // A split's subtasks still waiting for an agent are of no use once it ended.
            if let Some(w) = &rec.waiting {
                for &f in &w.feeders {
                    if self.pending.remove(f) {
                        let why = Failure::Cancelled("the task it was split from ended".into());
                        ending.push((f, Outcome::Failed(why), None));
                    }
                }
            }
            self.deliver(id, rec, outcome);
        }
    }

    /// Frees what an ended task held and hands its outcome to whoever takes it.
    fn deliver(&mut self, id: u64, rec: TaskRecord, outcome: Outcome) {
        self.leave_flow(rec.source, rec.staged);
        self.cache_task_ended(id);
        if let Some((_, handles)) = rec.lent {
            self.slab.release_handles(&handles, Owner::Supervisor);
            self.lent_buffers -= handles.len();
        }
        for input in rec.inputs {
            self.release_input(input);
        }
        if let Some(w) = rec.waiting {
            for input in w.slots.into_iter().flatten() {
                self.release_input(input);
            }
        }
        if rec.root.is_none() {
            self.split_budget.remove(&id);
        }
        if let Some(g) = rec.spread {
            if let Some(entry) = self.spread.get_mut(&g) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.spread.remove(&g);
                }
            }
        }
        let completed = outcome.is_completed();
        if completed {
            self.counters.completed += 1;
        } else {
            self.counters.failed += 1;
        }
        let ended_ns = self.now_ns();
        let ran = (rec.dispatched_ns > 0).then(|| ended_ns.saturating_sub(rec.dispatched_ns));
        self.counters
            .by_kind
            .entry(rec.kind)
            .or_default()
            .ended(completed, ran);
        match rec.delivery {
            Delivery::Handle if self.abandoned.remove(&id) => self.discard(outcome),
            Delivery::Handle => {
                self.results.insert(id, outcome);
            }
            Delivery::Stream => {
                self.open_stream -= 1;
                self.stream.push_back((id, outcome));
            }
            Delivery::Internal => self.discard(outcome),
            Delivery::Set(set) => {
                let timing = Timing {
                    submitted_ns: rec.submitted_ns,
                    dispatched_ns: rec.dispatched_ns,
                    ended_ns,
                };
                match self.sets.get_mut(&set) {
                    Some(q) => q.push_back((id, outcome, timing)),
                    // The set was dropped.
                    None => self.discard(outcome),
                }
            }
        }
    }

    /// Lets an outcome nobody will take go, freeing its held output here: a [`Held`]
    /// dropped under the state lock would take the lock again.
    pub(super) fn discard(&mut self, outcome: Outcome) {
        if let Outcome::Completed { held: Some(h), .. } = outcome {
            if let Some(stored) = self.held.remove(&h.defuse()) {
                stored.release(&self.slab);
            }
        }
    }
}
