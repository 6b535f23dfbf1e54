//! The bus from inside an agent ([`crate::runtime::bus`]): a handler publishes through the
//! supervisor (its message goes on the completion ring, inline or in the agent's own page
//! buffers, and the supervisor copies it into the topic), and reads topics directly from
//! the supervisor's file, which it maps read-only. A subscription lasts as long as the
//! agent: it is kept across tasks, by topic.
//!
//! The agent loop reads the control topic before each task: a task cancelled while it
//! waited on this agent's ring is skipped, and a shutdown ends the loop.

use super::AgentConfig;
use crate::runtime::bus::{self as rt, Control, Progress, CONTROL, PROGRESS};
use crate::runtime::task::{flags, status};
use crate::shm::bus::{BusError, BusReader, Message};
use crate::shm::descriptor::Descriptor;
use crate::shm::futex::WaitPair;
use crate::shm::heartbeat::{AgentState, HeartbeatWord};
use crate::shm::ring::{Producer, RingCorrupt, Wait};
use crate::shm::segment::{Segment, SegmentBus, SegmentRing, SegmentSlab, TopicError};
use crate::shm::slab::{Owner, PageHandle, Slab, SlabError};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Cancelled task ids an agent remembers (the oldest are forgotten first).
const CANCELLED_KEPT: usize = 4096;

/// Why a message could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No such topic, or the control topic (the supervisor's alone).
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The message does not fit the agent's page buffers.
    #[error(transparent)]
    Slab(#[from] SlabError),
    /// The completion ring is corrupt.
    #[error(transparent)]
    Ring(#[from] RingCorrupt),
}

/// The bus, as an agent's handlers use it ([`super::TaskContext::bus`]).
pub struct Bus<'a> {
    pub(super) seg: &'a Arc<Segment>,
    slab: &'a Slab<SegmentSlab>,
    pub(super) me: Owner,
    hb: &'a HeartbeatWord,
    pub(super) config: &'a AgentConfig,
    pub(super) doorbell: WaitPair<'a>,
    pub(super) tx: RefCell<Producer<Descriptor, SegmentRing>>,
    /// The shared state, read in place, and this agent's numbering of its requests.
    pub(super) kv: crate::shm::kv::KvReader<crate::shm::segment::SegmentKv>,
    pub(super) requests: Cell<u64>,
    names: RefCell<HashMap<String, u32>>,
    readers: RefCell<HashMap<u32, BusReader<SegmentBus>>>,
    control: RefCell<BusReader<SegmentBus>>,
    /// Tasks heard cancelled: the last [`CANCELLED_KEPT`] in order, and as a set for the
    /// check before each task.
    cancelled: RefCell<(VecDeque<u64>, HashSet<u64>)>,
    shutdown: Cell<bool>,
    /// The task running: its id and attempt.
    pub(super) current: Cell<(u64, u32)>,
}

impl std::fmt::Debug for Bus<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscriptions", &self.readers.borrow().len())
            .finish()
    }
}

impl<'a> Bus<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        seg: &'a Arc<Segment>,
        slab: &'a Slab<SegmentSlab>,
        me: Owner,
        hb: &'a HeartbeatWord,
        config: &'a AgentConfig,
        doorbell: WaitPair<'a>,
        tx: Producer<Descriptor, SegmentRing>,
    ) -> Result<Self, TopicError> {
        Ok(Bus {
            control: RefCell::new(seg.bus_reader(CONTROL)?),
            seg,
            slab,
            me,
            hb,
            config,
            doorbell,
            tx: RefCell::new(tx),
            kv: seg.kv_reader(),
            // Numbered within this incarnation: its epoch above, a count below.
            requests: Cell::new(u64::from(config.epoch) << 40),
            names: RefCell::default(),
            readers: RefCell::default(),
            cancelled: RefCell::default(),
            shutdown: Cell::new(false),
            current: Cell::new((0, 0)),
        })
    }

    /// The agent's view of the page buffers.
    pub(super) fn slab(&self) -> &Slab<SegmentSlab> {
        self.slab
    }

    fn topic(&self, name: &str) -> Result<u32, TopicError> {
        if let Some(&t) = self.names.borrow().get(name) {
            return Ok(t);
        }
        let t = self.seg.topic_by_name(name)?;
        self.names.borrow_mut().insert(name.to_string(), t);
        Ok(t)
    }

    /// Publishes `bytes` on the topic `name`, through the supervisor: subscribers see it
    /// once the supervisor has taken it (within its next pass, microseconds). Messages of
    /// this agent keep their order. The control topic is the supervisor's: refused.
    pub fn publish(&self, name: &str, bytes: &[u8]) -> Result<(), PublishError> {
        let topic = self.topic(name)?;
        if topic == CONTROL {
            return Err(TopicError::NotWriter.into());
        }
        self.send(topic, bytes)
    }

    fn send(&self, topic: u32, bytes: &[u8]) -> Result<(), PublishError> {
        self.hand_over(status::PUBLISH, u64::from(topic), 0, bytes, true)
    }

    /// Hands the supervisor a message that is not a completion (`kind`: a publish, a state
    /// request), its bytes inline if `inline` allows and they fit, else in our pool; rings
    /// the doorbell.
    pub(super) fn hand_over(
        &self,
        kind: u32,
        arg: u64,
        arg2: u32,
        bytes: &[u8],
        inline: bool,
    ) -> Result<(), PublishError> {
        let (task, attempt) = self.current.get();
        let mut d = Descriptor::new(task, attempt, kind);
        d.arg = arg;
        d.arg2 = arg2;
        match rt::pack_inline(bytes).filter(|_| inline) {
            Some((a, b)) => {
                d.flags = flags::INLINE_MESSAGE;
                d.arg2 = bytes.len() as u32;
                d.buffer = a;
                d.len = b;
            }
            None => {
                let h = write_own(
                    self.slab,
                    self.me,
                    self.hb,
                    self.config,
                    self.doorbell,
                    bytes,
                )?;
                d.buffer = h.to_raw();
                d.len = bytes.len() as u64;
            }
        }
        let wait = Wait::SpinThenSleep(self.config.spin);
        let doorbell = self.doorbell;
        self.tx
            .borrow_mut()
            .push_all(&[d], wait, Some(self.config.heartbeat_period), || {
                doorbell.wake()
            })?;
        doorbell.wake();
        Ok(())
    }

    /// Reports how far the running task has come (`done` of `total` units; 0: unknown),
    /// for `status()` and the subscribers of [`rt::PROGRESS_TOPIC`].
    pub fn progress(&self, done: u32, total: u32) -> Result<(), PublishError> {
        let p = Progress {
            task: self.current.get().0,
            done,
            total,
        };
        self.send(PROGRESS, &p.encode())
    }

    /// Subscribes to the topic `name` from its next message (a topic read without it is
    /// subscribed at the first read). Kept for the agent's life.
    pub fn subscribe(&self, name: &str) -> Result<(), TopicError> {
        let topic = self.topic(name)?;
        let mut readers = self.readers.borrow_mut();
        if let std::collections::hash_map::Entry::Vacant(e) = readers.entry(topic) {
            e.insert(self.seg.bus_reader(topic)?);
        }
        Ok(())
    }

    /// The next message on `name`, if one is there.
    pub fn try_recv(&self, name: &str) -> Result<Message, BusError> {
        self.recv_inner(name, 0, Some(Duration::ZERO))
    }

    /// The next message on `name`, waiting at most `timeout` (spinning briefly, then
    /// sleeping until the supervisor publishes). `Err(Empty)` when the time ran out; an
    /// unknown topic reads as `Err(Corrupt)` (subscribe first to tell them apart).
    pub fn recv(&self, name: &str, timeout: Duration) -> Result<Message, BusError> {
        self.recv_inner(name, self.config.spin, Some(timeout))
    }

    /// [`Bus::recv`], polling the whole time instead of sleeping: the lowest latency, at
    /// the cost of a core.
    pub fn poll(&self, name: &str, timeout: Duration) -> Result<Message, BusError> {
        self.recv_inner(name, u32::MAX, Some(timeout))
    }

    fn recv_inner(
        &self,
        name: &str,
        spins: u32,
        timeout: Option<Duration>,
    ) -> Result<Message, BusError> {
        if self.subscribe(name).is_err() {
            return Err(BusError::Corrupt);
        }
        let topic = self.topic(name).map_err(|_| BusError::Corrupt)?;
        let mut readers = self.readers.borrow_mut();
        let reader = readers.get_mut(&topic).ok_or(BusError::Corrupt)?;
        let slab = self.slab;
        reader.recv_with(spins, timeout, |raw, len, out| {
            slab.segments(raw, len, Owner::Supervisor)
                .map(|parts| parts.iter().for_each(|p| out.extend_from_slice(p)))
                .is_ok()
        })
    }

    /// Whether the running task was cancelled (a long handler may ask now and then, and
    /// stop early: what it returns is discarded).
    pub fn cancelled(&self) -> bool {
        self.read_control();
        self.is_cancelled(self.current.get().0)
    }

    /// Reads what the supervisor said since the last look.
    pub(super) fn read_control(&self) {
        let mut control = self.control.borrow_mut();
        loop {
            match control.try_recv() {
                Ok(m) => match Control::decode(&m.bytes) {
                    Some(Control::Cancel(id)) => {
                        let mut c = self.cancelled.borrow_mut();
                        let (order, set) = &mut *c;
                        if set.insert(id.get()) {
                            if order.len() == CANCELLED_KEPT {
                                if let Some(old) = order.pop_front() {
                                    set.remove(&old);
                                }
                            }
                            order.push_back(id.get());
                        }
                    }
                    Some(Control::Shutdown) => self.shutdown.set(true),
                    None => {}
                },
                Err(BusError::Empty) => return,
                // Fell behind: what was lost only costs running a cancelled task.
                Err(BusError::Lagged(_) | BusError::Corrupt) => {}
            }
        }
    }

    /// Whether task `id` was cancelled, as far as this agent heard.
    pub(super) fn is_cancelled(&self, id: u64) -> bool {
        self.cancelled.borrow().1.contains(&id)
    }

    /// Whether the supervisor said it is shutting down.
    pub(super) fn shutting_down(&self) -> bool {
        self.shutdown.get()
    }
}

/// Writes `bytes` into the agent's own pool, waiting while it is full (the supervisor frees
/// its buffers as it takes what they carry); the state tells the supervisor (and
/// `status()`) that the agent is held up by its pool.
pub(super) fn write_own(
    slab: &Slab<SegmentSlab>,
    me: Owner,
    hb: &HeartbeatWord,
    config: &AgentConfig,
    doorbell: WaitPair<'_>,
    bytes: &[u8],
) -> Result<PageHandle, SlabError> {
    let mut waiting = false;
    let h = loop {
        match slab.write_payload(me, bytes) {
            Ok(h) => break h,
            Err(SlabError::Exhausted { .. }) => {}
            Err(e) => return Err(e),
        }
        if !waiting {
            waiting = true;
            hb.set_state(AgentState::WaitingForRoom);
        }
        doorbell.wake();
        std::thread::sleep(config.heartbeat_period / 50);
    };
    if waiting {
        hb.set_state(AgentState::Busy);
    }
    Ok(h)
}
