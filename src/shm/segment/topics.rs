//! The bus's topics inside a segment: each a broadcast ring ([`crate::shm::bus`]) in the
//! supervisor's file, which only the supervisor writes and every agent maps read-only,
//! named once when the supervisor sets the segment up; each agent's sleep flag for a topic
//! lives in its own slot file, where the supervisor's writer finds it to wake the agent.

use super::{Owned, Segment, SegmentError, BUS_HEADER, TOPIC_NAME};
use crate::shm::bus::{BusHeader, BusReader, BusSlot, BusStorage, BusWriter};
use crate::shm::futex::SleepFlag;
use crate::shm::sync::{AtomicU32, Ordering};
use std::sync::Arc;

/// The longest topic name.
pub const TOPIC_NAME_MAX: usize = 64;

/// Why a topic could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Past the segment's topics.
    #[error("topic {topic} out of range (the segment has {topics})")]
    NoSuchTopic {
        /// Asked for.
        topic: u32,
        /// Configured.
        topics: u32,
    },
    /// No topic has that name.
    #[error("no topic is named {0:?}")]
    UnknownName(String),
    /// A name that is empty, too long, or given twice.
    #[error("bad topic name {name:?}: {why}")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Only the segment's creator (the supervisor) writes topics.
    #[error("only the supervisor writes topics")]
    NotWriter,
}

/// One topic of a segment, as a [`BusStorage`]: its header and slots in the supervisor's
/// file, the readers' sleep flags in the slot files this process maps.
#[derive(Debug, Clone)]
pub struct SegmentBus {
    segment: Arc<Segment>,
    header: *const BusHeader,
    slots: *const BusSlot,
    capacity: usize,
    /// The offset of this topic's flag in a slot file.
    flag_offset: u64,
}

// SAFETY: the pointers target the supervisor's mapping, which the `Arc` keeps alive; the bus
// protocol, not thread affinity, governs access.
unsafe impl Send for SegmentBus {}

// SAFETY: the header and the `capacity` slots lie inside the topic's part of the validated
// bus region of the supervisor's file, mapped as long as `segment` lives; the capacity is
// the configured power of two; the flags lie in the slot files' validated flag regions.
// Only the creator's mapping of the supervisor's file is writable, and only the creator
// makes a writer ([`Segment::bus_writer`]); a reader writes only its own flag, in its own
// slot file.
unsafe impl BusStorage for SegmentBus {
    fn header(&self) -> &BusHeader {
        // SAFETY: see the impl's safety comment; atomics only, valid for any bit pattern.
        unsafe { &*self.header }
    }
    fn slots(&self) -> &[BusSlot] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.slots, self.capacity) }
    }
    fn flag_count(&self) -> usize {
        self.segment.agent_slots() as usize
    }
    fn flag(&self, i: usize) -> Option<&SleepFlag> {
        let p = self
            .segment
            .at::<SleepFlag>(Owned::Slot(i as u32), self.flag_offset)
            .ok()?;
        // SAFETY: inside that slot file's flag region (validated layout); an atomic.
        Some(unsafe { &*p })
    }
}

impl Segment {
    /// The number of topics.
    pub fn topics(&self) -> u32 {
        self.layout.config.topics
    }

    fn check_topic(&self, topic: u32) -> Result<(), TopicError> {
        if topic >= self.topics() {
            return Err(TopicError::NoSuchTopic {
                topic,
                topics: self.topics(),
            });
        }
        Ok(())
    }

    /// The start of `topic`'s part of the bus region (its name line).
    fn topic_base(&self, topic: u32) -> u64 {
        self.layout.bus.offset + u64::from(topic) * self.layout.topic_stride
    }

    /// The length word of `topic`'s name line.
    fn name_len(&self, topic: u32) -> &AtomicU32 {
        let p = self
            .at::<AtomicU32>(Owned::Supervisor, self.topic_base(topic))
            .expect("the supervisor's file is always mapped");
        // SAFETY: the first word of the topic's name line, inside the bus region; atomic.
        unsafe { &*p }
    }

    /// Names `topic` (once, before any agent looks it up). Only the creator may, from one
    /// thread: it names every topic while it sets the segment up, before agents start.
    pub fn name_topic(&self, topic: u32, name: &str) -> Result<(), TopicError> {
        self.check_topic(topic)?;
        if !self.creator {
            return Err(TopicError::NotWriter);
        }
        let bad = |why| {
            Err(TopicError::BadName {
                name: name.to_string(),
                why,
            })
        };
        if name.is_empty() || name.len() > TOPIC_NAME_MAX {
            return bad("names are 1 to TOPIC_NAME_MAX (64) bytes");
        }
        if self.topic_by_name(name).is_ok() || self.topic_name(topic).is_some() {
            return bad("a topic has that name, or this topic has one already");
        }
        let at = self.topic_base(topic) + 4;
        let p = self
            .at::<u8>(Owned::Supervisor, at)
            .expect("the supervisor's file is always mapped");
        // SAFETY: `name.len() <= TOPIC_NAME_MAX` bytes from offset 4 of the topic's
        // 128-byte name line, in the creator's writable mapping; nobody reads them before
        // the length below says they are there.
        unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), p, name.len()) };
        // Release: SYNC POINT (topic named): pairs with the Acquire in `topic_name`.
        self.name_len(topic)
            .store(name.len() as u32, Ordering::Release);
        Ok(())
    }

    /// The name of `topic`, if it has one.
    pub fn topic_name(&self, topic: u32) -> Option<String> {
        self.check_topic(topic).ok()?;
        // Acquire: SYNC POINT (topic named): pairs with the Release in `name_topic`.
        let len = self.name_len(topic).load(Ordering::Acquire) as usize;
        if len == 0 || len > TOPIC_NAME_MAX {
            return None;
        }
        let p = self
            .at::<u8>(Owned::Supervisor, self.topic_base(topic) + 4)
            .ok()?;
        let mut name = vec![0u8; len];
        // SAFETY: `len <= TOPIC_NAME_MAX` bytes inside the name line; plain bytes, read as
        // they are (checked as UTF-8 below).
        unsafe { std::ptr::copy_nonoverlapping(p, name.as_mut_ptr(), len) };
        String::from_utf8(name).ok()
    }

    /// The topic named `name`.
    pub fn topic_by_name(&self, name: &str) -> Result<u32, TopicError> {
        (0..self.topics())
            .find(|&t| self.topic_name(t).as_deref() == Some(name))
            .ok_or_else(|| TopicError::UnknownName(name.to_string()))
    }

    fn bus(self: &Arc<Self>, topic: u32) -> Result<SegmentBus, TopicError> {
        self.check_topic(topic)?;
        let base = self.topic_base(topic) + TOPIC_NAME;
        let at = |offset| {
            self.at::<u8>(Owned::Supervisor, offset)
                .expect("the supervisor's file is always mapped")
        };
        Ok(SegmentBus {
            segment: self.clone(),
            header: at(base) as *const BusHeader,
            slots: at(base + BUS_HEADER) as *const BusSlot,
            capacity: self.layout.config.topic_capacity as usize,
            flag_offset: self.flag_offset(topic),
        })
    }

    /// The writer of `topic`: only the creator has one (and must keep one per topic).
    pub fn bus_writer(self: &Arc<Self>, topic: u32) -> Result<BusWriter<SegmentBus>, TopicError> {
        if !self.creator {
            return Err(TopicError::NotWriter);
        }
        Ok(BusWriter::attach(self.bus(topic)?))
    }

    /// A reader of `topic` from its next message. In an agent it may sleep (on its own
    /// slot's flag); in the supervisor it polls.
    pub fn bus_reader(self: &Arc<Self>, topic: u32) -> Result<BusReader<SegmentBus>, TopicError> {
        let flag = (!self.creator)
            .then(|| self.slots.iter().position(Option::is_some))
            .flatten();
        Ok(BusReader::subscribe(self.bus(topic)?, flag))
    }

    /// Clears `slot`'s sleep flags, for a new incarnation of its agent (one that died
    /// asleep would otherwise cost every publish a wake-up call).
    pub fn reset_bus_flags(&self, slot: u32) -> Result<(), SegmentError> {
        for t in 0..self.topics() {
            let p = self.at::<SleepFlag>(Owned::Slot(slot), self.flag_offset(t))?;
            // SAFETY: the slot file's flag for topic `t` (validated layout); an atomic.
            unsafe { &*p }.clear();
        }
        Ok(())
    }

    /// The offset of topic `topic`'s sleep flag in a slot file.
    fn flag_offset(&self, topic: u32) -> u64 {
        self.layout.slot_bus_flags.offset
            + u64::from(topic) * std::mem::size_of::<SleepFlag>() as u64
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shm::bus::BusError;
    use crate::shm::segment::SegmentConfig;
    use crate::shm::slab::Owner;

    fn segment() -> Arc<Segment> {
        Segment::create(SegmentConfig {
            agent_slots: 2,
            ring_capacity: 16,
            buffer_size: 256,
            buffer_count: 8,
            agent_buffers: 4,
            topics: 3,
            topic_capacity: 4,
            state_entries: 1024,
        })
        .unwrap()
    }

    #[test]
    fn topics_are_named_once_and_found_by_name() {
        let seg = segment();
        seg.name_topic(0, "control").unwrap();
        seg.name_topic(2, "progress").unwrap();
        assert_eq!(seg.topic_by_name("progress"), Ok(2));
        assert_eq!(seg.topic_name(1), None);
        assert!(matches!(
            seg.name_topic(1, "control"),
            Err(TopicError::BadName { .. })
        ));
        assert!(matches!(
            seg.name_topic(0, "again"),
            Err(TopicError::BadName { .. })
        ));
        assert!(seg.name_topic(1, &"x".repeat(65)).is_err());
        assert!(matches!(
            seg.name_topic(3, "past"),
            Err(TopicError::NoSuchTopic {
                topic: 3,
                topics: 3
            })
        ));
        assert_eq!(
            seg.topic_by_name("nope"),
            Err(TopicError::UnknownName("nope".into()))
        );
    }

    /// An agent's view reads what the supervisor publishes, inline and by page buffer,
    /// sleeps on its own flag, and cannot write.
    #[test]
    fn an_agent_reads_what_the_supervisor_publishes_and_cannot_write() {
        let seg = segment();
        seg.name_topic(1, "news").unwrap();
        let (a, b, c) = seg.dup_agent_fds(1).unwrap();
        let agent = Segment::open_agent(1, a, b, c).unwrap();
        let topic = agent.topic_by_name("news").unwrap();
        assert_eq!(agent.bus_writer(topic).unwrap_err(), TopicError::NotWriter);
        assert_eq!(agent.name_topic(0, "mine"), Err(TopicError::NotWriter));
        let mut rx = agent.bus_reader(topic).unwrap();
        let mut tx = seg.bus_writer(topic).unwrap();
        tx.publish(0, b"inline").unwrap();
        let slab = seg.slab(0);
        let big: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let h = slab.write_payload(Owner::Supervisor, &big).unwrap();
        assert_eq!(tx.publish_large(0, big.len() as u32, h.to_raw()), None);
        let agent_slab = agent.slab(0);
        let mut read = |raw: u64, len: u64, out: &mut Vec<u8>| {
            agent_slab
                .segments(raw, len, Owner::Supervisor)
                .map(|parts| parts.iter().for_each(|p| out.extend_from_slice(p)))
                .is_ok()
        };
        assert_eq!(rx.try_recv_with(&mut read).unwrap().bytes, b"inline");
        assert_eq!(rx.try_recv_with(&mut read).unwrap().bytes, big);
        assert_eq!(rx.try_recv_with(&mut read), Err(BusError::Empty));
        // A sleeping agent is woken by the next publish (its flag is in its slot file).
        let t = std::thread::spawn(move || {
            rx.recv_with(0, Some(std::time::Duration::from_secs(10)), |_, _, _| false)
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        tx.publish(0, b"wake").unwrap();
        assert_eq!(t.join().unwrap().unwrap().bytes, b"wake");
        seg.reset_bus_flags(1).unwrap();
    }
}
