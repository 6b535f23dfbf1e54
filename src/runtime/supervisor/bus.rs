//! The bus as the supervisor runs it: it is every topic's one writer, of its own messages
//! and of those agents hand it to publish, and it reads any topic like an agent does.
//!
//! A message of up to [`INLINE_MAX`] bytes goes into its slot; a larger one into the
//! supervisor's page buffers (which agents map read-only), freed when its slot is
//! overwritten. The bus keeps at most an eighth of the supervisor's pool that way, so it
//! never takes the room tasks are lent from; a large message past that is refused.
//!
//! An agent's message is checked before it goes out: a topic it may not publish on (the
//! control topic, or one past the segment's) is refused and counted, and its bytes come out
//! of its pool as a completion's do (a chain that does not check out kills the agent). A
//! progress report is kept for `status()` only when it names a task the agent has.

use super::error::Error;
use super::state::State;
use super::Supervisor;
use crate::runtime::bus::{self as rt, Progress, CONTROL, PROGRESS};
use crate::runtime::task::{flags, DeathCause};
use crate::shm::bus::{BusError, BusReader, BusWriter, Message, INLINE_MAX};
use crate::shm::descriptor::Descriptor;
use crate::shm::segment::{Segment, SegmentBus, SegmentSlab, TopicError};
use crate::shm::slab::{Owner, PageHandle, Slab};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Every topic's writer, and the page buffers of the large messages the topics hold.
/// Behind a lock of its own (taken after the state's when both are), so that publishing
/// never waits for dispatch.
pub(super) struct Topics {
    names: Vec<String>,
    writers: Vec<BusWriter<SegmentBus>>,
    /// The supervisor's pool, for large messages (its allocation is lock-free: this view
    /// and the state's share it safely).
    slab: Slab<SegmentSlab>,
    /// By first handle (as a slot names it).
    chains: HashMap<u64, Vec<PageHandle>>,
    /// Buffers in `chains`.
    buffers: usize,
    /// Messages published, and agents' messages refused.
    pub(super) published: u64,
    pub(super) refused: u64,
}

impl Topics {
    /// The buffers of the large messages the topics hold (the ledger sweep's to keep).
    pub(super) fn held_buffers(&self) -> impl Iterator<Item = u32> + '_ {
        self.chains.values().flatten().map(|h| h.index)
    }

    /// Names the segment's topics (the runtime's, then `names`) and takes their writers.
    pub(super) fn new(seg: &Arc<Segment>, names: &[String]) -> Result<Topics, Error> {
        let all = rt::RUNTIME_TOPICS
            .iter()
            .map(|s| s.to_string())
            .chain(names.iter().cloned());
        let mut writers = Vec::new();
        let mut names = Vec::new();
        for (t, name) in all.enumerate() {
            seg.name_topic(t as u32, &name)?;
            writers.push(seg.bus_writer(t as u32)?);
            names.push(name);
        }
        Ok(Topics {
            names,
            writers,
            slab: seg.slab(0),
            chains: HashMap::new(),
            buffers: 0,
            published: 0,
            refused: 0,
        })
    }

    /// The topic named `name`.
    pub(super) fn find(&self, name: &str) -> Result<u32, Error> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|t| t as u32)
            .ok_or_else(|| Error::Topic(TopicError::UnknownName(name.to_string())))
    }

    /// Publishes `bytes` on `topic` as `publisher`: inline, or in page buffers. Returns the
    /// message's number.
    pub(super) fn publish(
        &mut self,
        topic: u32,
        publisher: u32,
        bytes: &[u8],
    ) -> Result<u64, Error> {
        let slab = &self.slab;
        let w = self
            .writers
            .get_mut(topic as usize)
            .ok_or(Error::Topic(TopicError::NoSuchTopic { topic, topics: 0 }))?;
        let seq = w.published();
        let overwritten = if bytes.len() <= INLINE_MAX {
            w.publish(publisher, bytes).expect("fits inline")
        } else {
            let limit = slab.capacity(Owner::Supervisor) as usize / 8;
            let need = bytes.len().div_ceil(slab.buffer_size());
            if self.buffers + need > limit || bytes.len() > u32::MAX as usize {
                return Err(Error::BusFull {
                    len: bytes.len() as u64,
                    limit: (limit * slab.buffer_size()) as u64,
                });
            }
            let handles = slab.write_payload_handles(Owner::Supervisor, bytes)?;
            let first = handles[0].to_raw();
            self.buffers += handles.len();
            self.chains.insert(first, handles);
            w.publish_large(publisher, bytes.len() as u32, first)
        };
        if let Some(old) = overwritten.and_then(|raw| self.chains.remove(&raw)) {
            self.buffers -= old.len();
            self.slab.release_handles(&old, Owner::Supervisor);
        }
        self.published += 1;
        Ok(seq)
    }
}

impl State {
    /// The bytes of a message agent `i` handed over in its own page buffers (not a
    /// completion: a publish, a state request), taken out of its pool as a completion's
    /// are; `None`, and the agent killed, if the chain does not check out.
    pub(super) fn take_message(&mut self, i: usize, d: &Descriptor) -> Option<Vec<u8>> {
        let slot = self.agents[i].slot;
        let Some(raw) = d.payload() else {
            return Some(Vec::new());
        };
        let taken = self
            .slab
            .claim_chain(raw, d.len, Owner::Agent(slot), Owner::Supervisor)
            .and_then(|handles| {
                let got = self.slab.read_handles(&handles, d.len, Owner::Supervisor);
                self.slab.release_handles(&handles, Owner::Supervisor);
                got
            });
        match taken {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(slot, kind = d.kind, "bad message payload: {e}");
                self.kill(i, DeathCause::Protocol);
                None
            }
        }
    }

    /// An agent's message to publish (a [`crate::runtime::task::status::PUBLISH`]
    /// descriptor from agent `i`).
    pub(super) fn relay(&mut self, i: usize, d: &Descriptor) {
        let slot = self.agents[i].slot;
        let bytes = if d.flags & flags::INLINE_MESSAGE != 0 {
            rt::unpack_inline((d.buffer, d.len), d.arg2)
        } else {
            let Some(b) = self.take_message(i, d) else {
                return;
            };
            b
        };
        let topic = u32::try_from(d.arg).unwrap_or(u32::MAX);
        let mut bus = self.bus.lock();
        if topic == CONTROL || topic as usize >= bus.writers.len() {
            bus.refused += 1;
            return;
        }
        if topic == PROGRESS {
            match Progress::decode(&bytes) {
                Some(p) if self.agents[i].in_flight.iter().any(|f| f.id == p.task) => {
                    self.agents[i].progress = Some(p);
                }
                _ => {
                    bus.refused += 1;
                    return;
                }
            }
        }
        if bus
            .publish(topic, rt::agent_publisher(slot), &bytes)
            .is_err()
        {
            bus.refused += 1;
        }
    }

    /// Tells every agent (on the control topic).
    pub(super) fn tell_agents(&mut self, c: rt::Control) {
        // A control message is inline: it cannot fail.
        let _ = self
            .bus
            .lock()
            .publish(CONTROL, rt::SUPERVISOR, &c.encode());
    }
}

/// A subscription to a topic: every message published on it from the subscription on, in
/// order per publisher, unless the subscription falls behind by more than the topic keeps
/// (it is then told by how many, and goes on from the oldest still there).
#[derive(Debug)]
pub struct Subscription {
    reader: BusReader<SegmentBus>,
    slab: Slab<SegmentSlab>,
}

impl Subscription {
    /// The next message, if one is there.
    pub fn try_recv(&mut self) -> Result<Message, BusError> {
        self.recv_within(0, Some(Duration::ZERO))
    }

    /// The next message, waiting at most `timeout` for it (polling: about 50 µs between
    /// looks once a short spin found nothing; the supervisor's subscriptions have no sleep
    /// flag). `Err(Empty)` when the time ran out.
    pub fn recv(&mut self, timeout: Duration) -> Result<Message, BusError> {
        self.recv_within(2_000, Some(timeout))
    }

    /// The reader's own wait ([`BusReader::recv_with`]), large messages read from the
    /// supervisor's pool.
    fn recv_within(&mut self, spins: u32, timeout: Option<Duration>) -> Result<Message, BusError> {
        let slab = &self.slab;
        self.reader.recv_with(spins, timeout, |raw, len, out| {
            slab.segments(raw, len, Owner::Supervisor)
                .map(|parts| parts.iter().for_each(|p| out.extend_from_slice(p)))
                .is_ok()
        })
    }
}

impl Supervisor {
    /// The number of the topic named `name` (the runtime's own, [`rt::RUNTIME_TOPICS`], and
    /// those given to [`super::SupervisorBuilder::topic`]).
    pub fn topic(&self, name: &str) -> Result<u32, Error> {
        self.shared.bus.lock().find(name)
    }

    /// Publishes `bytes` on the topic `name` to every subscriber, agents and supervisor
    /// alike; returns the message's number in the topic. Never waits for a subscriber.
    /// The control topic is the runtime's own: refused.
    pub fn publish(&self, name: &str, bytes: &[u8]) -> Result<u64, Error> {
        let mut bus = self.shared.bus.lock();
        let topic = bus.find(name)?;
        if topic == CONTROL {
            return Err(Error::Topic(TopicError::NotWriter));
        }
        bus.publish(topic, rt::SUPERVISOR, bytes)
    }

    /// Subscribes to the topic `name` from its next message.
    pub fn subscribe(&self, name: &str) -> Result<Subscription, Error> {
        let topic = self.topic(name)?;
        Ok(Subscription {
            reader: self.shared.seg.bus_reader(topic)?,
            slab: self.shared.seg.slab(0),
        })
    }
}
