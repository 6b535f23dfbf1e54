//! The shared cache: `get_or_compute(key, f)` across agents
//! ([`crate::agent::Cache::get_or_compute`]).
//!
//! The supervisor keeps each key's state:
//! - **computing**, by one agent's task: the first to ask was told to compute it; those who
//!   ask meanwhile wait, their requests unanswered, for its value;
//! - (a value may also come unasked, from a task whose submitter declared its key: a first
//!   copy, computed without asking, so that it waits for no answer);
//! - **ready**: its value in the supervisor's page buffers, which agents map read-only: an
//!   asker is answered with the chain (its first handle and length) and reads it there, the
//!   entry pinned until it says it is done (or its agent goes).
//!
//! A task may use only the key its submitter declared for it
//! ([`crate::runtime::task::TaskSpec::cache_key`], when it did), and only from the agent
//! running it: an agent taken over by a hostile input cannot plant a value under another
//! document's key. Refused asks are told to compute for themselves, and counted.
//!
//! An agent that dies while computing, or whose task ends without handing the value over,
//! or that gives up, hands the key to the first waiter, which is told to compute it; with
//! no waiter the key is forgotten. Entries are bounded by count and by page buffers; past
//! either, the least recently used ready entry that no one is reading is evicted. A value
//! that would not fit even so is not kept: its computer keeps it, and its waiters are told
//! to compute it each for itself.

use super::shared_state::{decode_request, op, reply};
use super::state::State;
use crate::shm::descriptor::Descriptor;
use crate::shm::slab::{Owner, PageHandle};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// The cache's bounds (see [`super::SupervisorBuilder::cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Keys at most.
    pub entries: usize,
    /// Page buffers its values may take at most (of the supervisor's pool).
    pub buffers: usize,
}

/// A waiter: its agent's slot, its request, its task.
type Waiter = (u32, u64, u64);

enum Entry {
    Computing {
        slot: u32,
        task: u64,
        waiters: VecDeque<Waiter>,
    },
    Ready {
        handles: Vec<PageHandle>,
        len: u64,
        /// Slots reading it (one per read not yet released).
        pins: Vec<u32>,
        used: u64,
    },
}

/// What the cache counts ([`super::Counters`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CacheCounts {
    pub(super) hits: u64,
    pub(super) misses: u64,
    pub(super) evictions: u64,
    pub(super) handed_over: u64,
    pub(super) refused: u64,
}

/// The cache's keys and values.
pub(super) struct Cache {
    limits: Option<CacheLimits>,
    entries: HashMap<Vec<u8>, Entry>,
    buffers: usize,
    /// The keys being computed: a task's end, and a wait let go, look at these only, not
    /// at every entry.
    computing: HashSet<Vec<u8>>,
    /// Ready entries by when they were last used (ticks are unique): eviction takes the
    /// oldest nobody reads without looking at the others.
    lru: BTreeMap<u64, Vec<u8>>,
    tick: u64,
    pub(super) counts: CacheCounts,
}

impl Cache {
    /// The buffers of the values it holds (the ledger sweep's to keep).
    pub(super) fn held_buffers(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .values()
            .flat_map(|e| match e {
                Entry::Ready { handles, .. } => handles.as_slice(),
                Entry::Computing { .. } => &[],
            })
            .map(|h| h.index)
    }

    pub(super) fn new(limits: Option<CacheLimits>) -> Cache {
        Cache {
            limits,
            entries: HashMap::new(),
            buffers: 0,
            computing: HashSet::new(),
            lru: BTreeMap::new(),
            tick: 0,
            counts: CacheCounts::default(),
        }
    }
}

impl State {
    /// An agent's request of the cache.
    pub(super) fn cache_request(&mut self, i: usize, d: &Descriptor, bytes: &[u8]) {
        let slot = self.agents[i].slot;
        let Some((_, key, value)) = decode_request(bytes) else {
            if d.arg2 == op::CACHE_GET {
                self.answer(slot, d.arg, reply::REFUSED, 0, 0);
            }
            return;
        };
        // Only for a task this agent has, and only the key it was given, if it was.
        let allowed = self.agents[i].in_flight.iter().any(|f| f.id == d.task_id)
            && self
                .tasks
                .get(&d.task_id)
                .is_some_and(|t| t.cache_key.as_deref().is_none_or(|k| k == key));
        if !allowed {
            self.cache.counts.refused += 1;
            if d.arg2 == op::CACHE_GET {
                self.answer(slot, d.arg, reply::CACHE_UNCACHED, 0, 0);
            }
            return;
        }
        let key = key.to_vec();
        match d.arg2 {
            op::CACHE_GET => self.cache_get(slot, d.arg, d.task_id, key),
            op::CACHE_PUT => {
                // A value nobody asked for is taken from a task declared with its key (the
                // submitter vouches for it), not from a task free to name any key.
                let declared = self
                    .tasks
                    .get(&d.task_id)
                    .is_some_and(|t| t.cache_key.is_some());
                self.cache_put(slot, &key, value, declared)
            }
            op::CACHE_ABANDON => {
                if matches!(self.cache.entries.get(&key), Some(Entry::Computing { slot: s, .. }) if *s == slot)
                {
                    self.hand_over(key);
                }
            }
            _ => {
                if let Some(Entry::Ready { pins, .. }) = self.cache.entries.get_mut(&key) {
                    if let Some(p) = pins.iter().position(|&s| s == slot) {
                        pins.swap_remove(p);
                    }
                }
            }
        }
    }

    fn cache_get(&mut self, slot: u32, request: u64, task: u64, key: Vec<u8>) {
        if self.cache.limits.is_none() {
            return self.answer(slot, request, reply::CACHE_UNCACHED, 0, 0);
        }
        self.cache.tick += 1;
        let tick = self.cache.tick;
        match self.cache.entries.get_mut(&key) {
            Some(Entry::Ready {
                handles,
                len,
                pins,
                used,
            }) => {
                // One pin a slot: an agent reads a value once at a time, and one that asks
                // again without releasing cannot keep the entry from eviction by asking.
                if !pins.contains(&slot) {
                    pins.push(slot);
                }
                if let Some(k) = self.cache.lru.remove(used) {
                    self.cache.lru.insert(tick, k);
                }
                *used = tick;
                let (first, len) = (handles[0].to_raw(), *len);
                self.cache.counts.hits += 1;
                self.answer(slot, request, reply::CACHE_HIT, first, len);
            }
            Some(Entry::Computing {
                slot: by, waiters, ..
            }) => {
                if *by == slot {
                    // Its computer asks again (a retried task on the same agent).
                    self.answer(slot, request, reply::CACHE_COMPUTE, 0, 0);
                } else {
                    waiters.push_back((slot, request, task));
                }
            }
            None => {
                self.cache.counts.misses += 1;
                let limits = self.cache.limits.expect("checked above");
                if self.cache.entries.len() >= limits.entries && !self.evict_one() {
                    return self.answer(slot, request, reply::CACHE_UNCACHED, 0, 0);
                }
                self.cache.computing.insert(key.clone());
                self.cache.entries.insert(
                    key,
                    Entry::Computing {
                        slot,
                        task,
                        waiters: VecDeque::new(),
                    },
                );
                self.answer(slot, request, reply::CACHE_COMPUTE, 0, 0);
            }
        }
    }

    fn cache_put(&mut self, slot: u32, key: &[u8], value: &[u8], declared: bool) {
        let waiters = match self.cache.entries.get(key) {
            Some(Entry::Computing { slot: by, .. }) if *by == slot => {
                let Some(Entry::Computing { waiters, .. }) = self.cache.entries.remove(key) else {
                    return;
                };
                self.cache.computing.remove(key);
                waiters
            }
            // Unasked (a first copy, put without asking): kept if its key was declared.
            None if declared && self.cache.limits.is_some() => {
                let limits = self.cache.limits.expect("checked above");
                if self.cache.entries.len() >= limits.entries && !self.evict_one() {
                    return;
                }
                VecDeque::new()
            }
            // Computed by another, or ready already: the first value stands.
            _ => return,
        };
        let limit = self.cache.limits.map_or(0, |l| l.buffers);
        let need = value.len().div_ceil(self.slab.buffer_size()).max(1);
        while self.cache.buffers + need > limit && self.evict_one() {}
        let handles = (self.cache.buffers + need <= limit)
            .then(|| {
                self.slab
                    .write_payload_handles(Owner::Supervisor, value)
                    .ok()
            })
            .flatten();
        let Some(handles) = handles else {
            // Not kept: every waiter computes it for itself.
            for (s, r, _) in waiters {
                self.answer(s, r, reply::CACHE_UNCACHED, 0, 0);
            }
            return;
        };
        self.cache.buffers += handles.len();
        let (first, len) = (handles[0].to_raw(), value.len() as u64);
        let mut pins = Vec::with_capacity(waiters.len());
        for &(s, r, _) in &waiters {
            pins.push(s);
            self.cache.counts.hits += 1;
            self.answer(s, r, reply::CACHE_HIT, first, len);
        }
        self.cache.tick += 1;
        let used = self.cache.tick;
        self.cache.lru.insert(used, key.to_vec());
        self.cache.entries.insert(
            key.to_vec(),
            Entry::Ready {
                handles,
                len,
                pins,
                used,
            },
        );
    }

    /// Evicts the least recently used ready entry nobody reads; whether there was one.
    fn evict_one(&mut self) -> bool {
        let entries = &self.cache.entries;
        let victim = self.cache.lru.iter().find_map(|(&used, k)| {
            matches!(entries.get(k), Some(Entry::Ready { pins, .. }) if pins.is_empty())
                .then_some(used)
        });
        let Some(used) = victim else {
            return false;
        };
        let k = self.cache.lru.remove(&used).expect("found above");
        if let Some(Entry::Ready { handles, .. }) = self.cache.entries.remove(&k) {
            self.cache.buffers -= handles.len();
            self.slab.release_handles(&handles, Owner::Supervisor);
            self.cache.counts.evictions += 1;
        }
        true
    }

    /// A key whose computer is gone: to its first waiter, told to compute it, or forgotten.
    fn hand_over(&mut self, key: Vec<u8>) {
        let Some(Entry::Computing { mut waiters, .. }) = self.cache.entries.remove(&key) else {
            return;
        };
        self.cache.computing.remove(&key);
        if let Some((slot, request, task)) = waiters.pop_front() {
            self.cache.computing.insert(key.clone());
            self.cache.counts.handed_over += 1;
            self.cache.entries.insert(
                key,
                Entry::Computing {
                    slot,
                    task,
                    waiters,
                },
            );
            self.answer(slot, request, reply::CACHE_COMPUTE, 0, 0);
        }
    }

    /// The agent in `slot` is gone: what it computed goes on, its reads end, its waits end.
    pub(super) fn cache_agent_gone(&mut self, slot: u32) {
        let mut orphans = Vec::new();
        for (k, e) in self.cache.entries.iter_mut() {
            match e {
                Entry::Computing {
                    slot: by, waiters, ..
                } => {
                    waiters.retain(|&(s, _, _)| s != slot);
                    if *by == slot {
                        orphans.push(k.clone());
                    }
                }
                Entry::Ready { pins, .. } => pins.retain(|&s| s != slot),
            }
        }
        for k in orphans {
            self.hand_over(k);
        }
    }

    /// Task `task` ended: a key it was computing and never handed over goes on, and its
    /// waits (if it waited) end.
    pub(super) fn cache_task_ended(&mut self, task: u64) {
        if self.cache.computing.is_empty() {
            return;
        }
        self.cache_forget(|_, _, t| t == task);
        let entries = &self.cache.entries;
        let orphans: Vec<Vec<u8>> = self
            .cache
            .computing
            .iter()
            .filter(
                |k| matches!(entries.get(*k), Some(Entry::Computing { task: t, .. }) if *t == task),
            )
            .cloned()
            .collect();
        for k in orphans {
            self.hand_over(k);
        }
    }

    /// Drops the waits `gone(slot, request, task)` names: nobody is there to answer.
    pub(super) fn cache_forget(&mut self, mut gone: impl FnMut(u32, u64, u64) -> bool) {
        for k in &self.cache.computing {
            if let Some(Entry::Computing { waiters, .. }) = self.cache.entries.get_mut(k) {
                waiters.retain(|&(s, r, t)| !gone(s, r, t));
            }
        }
    }
}
