//! The shared segment: anonymous memory files (`memfd`s), each written by one owner and
//! mapped by the processes that need it, inherited by each agent across fork/exec as file
//! descriptors.
//!
//! Because the files have no name, no crash can leave one behind: the kernel frees the
//! memory when the last process holding a descriptor or a mapping exits. Sizes are fixed at
//! creation, reserved up front with `fallocate` (so a lack of memory fails at start with a
//! clear error rather than as a `SIGBUS` later) and sealed against shrinking and growing (so
//! a misbehaving agent cannot truncate a file under the supervisor's mapping).
//!
//! # Files by owner
//!
//! An agent may write only what it owns. So the segment is three kinds of file, and the
//! kernel enforces who writes which:
//!
//! ```text
//! supervisor's file (written by the supervisor; sealed F_SEAL_FUTURE_WRITE once mapped, so
//! every agent can map it read-only only)
//!   offset 0      SegmentHeader (magic, version, sizes, region table)   one 4 KiB page
//!                 Control       shutdown word, the doorbell's sleep flag  one 4 KiB page
//!                 Rings         per slot: [to-agent producer side][to-agent slots]
//!                                         [from-agent consumer side]
//!                 Topics        per topic: its name (one line), its BusHeader, its
//!                               BusSlots (topic_capacity × 256 B): see [`crate::shm::bus`]
//!                 State         KvEntry × state_entries (512 B each): see [`crate::shm::kv`]
//!
//!                 Pool          the supervisor's page buffers: its ledger (owner words
//!                               count × 4 B | BufferMeta count × 16 B), then
//!                               buffer_count × buffer_size               page aligned
//!
//! slot file, one per agent slot (written by that slot's agent and by the supervisor, which
//! resets it between incarnations; no other agent has it)
//!   offset 0      HeartbeatWord                                          one line
//!          128    to-agent consumer side (head, its wake word and sleep flag)
//!          384    from-agent producer side (tail, ...)
//!          640    from-agent slots
//!                 Bus flags     the agent's sleep flag for each topic (4 B each)
//!                 State reply   the supervisor's answer to the agent's last strong write
//!                               (one line: [`StateReply`])
//!                 Pool          the agent's page buffers for its outputs: its ledger, then
//!                               agent_buffers × buffer_size              page aligned
//!
//! common file (written by everyone)
//!   offset 0      doorbell wake word (agents wake the supervisor)        one page
//! ```
//!
//! Page buffers are numbered in one index space: the supervisor's pool first
//! (`0..buffer_count`), then each slot's (`agent_buffers` each, in slot order), so a handle
//! names its pool by its index alone ([`SegmentSlab`]). The supervisor writes what it lends
//! (payloads, input lists, held outputs) into its own pool, which agents can only read; an
//! agent writes its outputs into its own pool, and the supervisor claims them from there
//! (an output it keeps past its task is copied into its own pool first, so that no agent
//! can change a result once handed over).
//!
//! A ring's two sides are written by different owners (see [`RingSide`]), so each lives in
//! its writer's file, and the other end reads it through its own mapping: the supervisor
//! maps everything read-write, an agent its own slot file and the common file read-write
//! and the supervisor's file read-only. A write by an agent into the header, the control
//! words, the supervisor's side of a ring or its page buffers, or another agent's anything,
//! is a fault in that agent (or impossible: it has no mapping), not a change the others
//! see. Only the common file's doorbell, a hint, is written by everyone.
//!
//! Every region is named in the header by offset and size (never by pointer). The layout is
//! a pure function of the [`SegmentConfig`] ([`Layout::compute`]); an agent recomputes it
//! from the header's configuration fields and compares region by region, and checks each
//! file's size, so a segment that does not fit is refused with the exact reason
//! ([`SegmentError`]).
//!
//! The creator builds the segment in two phases: it fills in the header and the regions,
//! then sets `ready` with a Release store; openers Acquire `ready` before trusting anything.
//! The supervisor never rereads the header after creation: it keeps its own [`Layout`].

use crate::shm::bus::{BusHeader, BusSlot};
use crate::shm::descriptor::Descriptor;
use crate::shm::futex::{SleepFlag, WaitPair, WakeWord};
use crate::shm::heartbeat::HeartbeatWord;
use crate::shm::kv::KvEntry;
use crate::shm::plain::SharedLine;
use crate::shm::ring::{Consumer, Producer, RingSide, RingSides, RingStorage};
use crate::shm::slab::{BufferMeta, BufferRef, Owner, Slab, SlabStorage};
use crate::shm::sync::{AtomicU32, Ordering, UnsafeCell};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// First eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"NFSWARM\0";
/// Layout version; bumped on any change to a shared structure or to what crosses the
/// rings (2: inline inputs, panicked completions, task-error frames, waiting for room;
/// 3: files by owner; 4: page buffers by owner; 5: bus topics; 6: shared state).
pub const VERSION: u32 = 6;
/// Bytes reserved for the header at offset 0 of the supervisor's file.
pub const HEADER_REGION: u64 = 4096;
const PAGE: u64 = 4096;
const LINE: u64 = 128;
/// Bytes of one buffer's metadata.
const META: u64 = std::mem::size_of::<BufferMeta>() as u64;
/// Bytes of one side of a ring.
const SIDE: u64 = std::mem::size_of::<RingSide>() as u64;
/// Bytes of a topic's name line: its length, then up to [`TOPIC_NAME_MAX`] bytes.
const TOPIC_NAME: u64 = LINE;
/// Bytes of a topic's header.
const BUS_HEADER: u64 = std::mem::size_of::<BusHeader>() as u64;
/// Offset of the heartbeat line in a slot file.
pub const SLOT_HEARTBEAT: u64 = 0;
/// Offset of the to-agent ring's consumer side in a slot file.
pub const SLOT_TO_AGENT_CONSUMER: u64 = LINE;
/// Offset of the from-agent ring's producer side in a slot file.
pub const SLOT_FROM_AGENT_PRODUCER: u64 = SLOT_TO_AGENT_CONSUMER + SIDE;
/// Offset of the from-agent ring's slots in a slot file.
pub const SLOT_FROM_AGENT_SLOTS: u64 = SLOT_FROM_AGENT_PRODUCER + SIDE;

/// Most agent slots a segment can have.
pub const MAX_AGENT_SLOTS: u32 = 4096;
/// Largest ring capacity.
pub const MAX_RING_CAPACITY: u32 = 1 << 20;
/// Most keys the shared state can have.
pub const MAX_STATE_ENTRIES: u32 = 1 << 20;
/// Most bus topics a segment can have.
pub const MAX_TOPICS: u32 = 256;
/// Largest topic capacity (messages kept).
pub const MAX_TOPIC_CAPACITY: u32 = 1 << 16;

/// An offset and a size inside one of the segment's files.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    /// Bytes from the start of its file.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// The header at offset 0 of the supervisor's file.
#[repr(C)]
#[derive(Debug)]
pub struct SegmentHeader {
    magic: [u8; 8],
    version: u32,
    header_size: u32,
    supervisor_size: u64,
    slot_size: u64,
    common_size: u64,
    agent_slots: u32,
    ring_capacity: u32,
    descriptor_size: u32,
    buffer_size: u32,
    buffer_count: u32,
    /// 0 while the creator builds the segment, 1 once it is ready.
    ready: AtomicU32,
    agent_buffers: u32,
    topics: u32,
    topic_capacity: u32,
    state_entries: u32,
    control: Region,
    rings: Region,
    doorbell: Region,
    pool_ledger: Region,
    pool_buffers: Region,
    slot_ledger: Region,
    slot_buffers: Region,
    bus: Region,
    slot_bus_flags: Region,
    state: Region,
    slot_state_reply: Region,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<SegmentHeader>() == 256);
const _: () = assert!(std::mem::size_of::<SegmentHeader>() as u64 <= HEADER_REGION);

/// The supervisor's words that every agent reads.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Control {
    /// Nonzero asks every agent to exit at its next wake-up.
    pub shutdown: SharedLine<AtomicU32>,
    /// Set by the supervisor while it sleeps on the doorbell ([`Segment::doorbell`]).
    doorbell_sleeping: SharedLine<SleepFlag>,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Control>() == 256);

/// What the creator chooses; everything else follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentConfig {
    /// Agent slots (each has a heartbeat line and two rings).
    pub agent_slots: u32,
    /// Descriptors per ring (a power of two).
    pub ring_capacity: u32,
    /// Bytes per page buffer (a multiple of 64).
    pub buffer_size: u32,
    /// Page buffers in the supervisor's pool (payloads it lends, outputs it keeps).
    pub buffer_count: u32,
    /// Page buffers in each agent's pool (its outputs until the supervisor takes them):
    /// the largest output an agent can return.
    pub agent_buffers: u32,
    /// Bus topics (each a broadcast ring the supervisor writes and everyone reads).
    pub topics: u32,
    /// Messages each topic keeps (a power of two, at least 2).
    pub topic_capacity: u32,
    /// Keys the shared state holds at most (a power of two).
    pub state_entries: u32,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            agent_slots: 16,
            ring_capacity: 1024,
            buffer_size: 64 * 1024,
            buffer_count: 1024,
            agent_buffers: 512,
            topics: 4,
            topic_capacity: 256,
            state_entries: 1024,
        }
    }
}

/// The page buffers' reservation, running on its own thread (see
/// [`Segment::create_deferred`]).
#[derive(Debug)]
pub struct Reservation(std::thread::JoinHandle<Result<(), SegmentError>>);

impl Reservation {
    /// Waits for the reservation to finish.
    pub fn wait(self) -> Result<(), SegmentError> {
        self.0.join().unwrap_or_else(|_| {
            Err(SegmentError::Os {
                what: "reserve page buffers",
                source: std::io::Error::other("the reservation thread panicked"),
            })
        })
    }
}

/// Allocates `len` bytes of `fd` from `offset` (of a segment of `total` bytes).
fn reserve(fd: &OwnedFd, offset: u64, len: u64, total: u64) -> Result<(), SegmentError> {
    if len == 0 {
        return Ok(());
    }
    nix::fcntl::fallocate(
        fd,
        nix::fcntl::FallocateFlags::empty(),
        offset as i64,
        len as i64,
    )
    .map_err(|e| SegmentError::Reserve {
        size: total,
        source: e.into(),
    })
}

/// Which of a slot's two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Tasks, supervisor to agent.
    ToAgent = 0,
    /// Completions, agent to supervisor.
    FromAgent = 1,
}

/// Where everything is, computed from a [`SegmentConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The configuration the layout was computed from.
    pub config: SegmentConfig,
    /// Bytes of all files together.
    pub total_size: u64,
    /// Bytes of the supervisor's file.
    pub supervisor_size: u64,
    /// Bytes of each slot file.
    pub slot_size: u64,
    /// Bytes of the common file.
    pub common_size: u64,
    /// The supervisor's words (supervisor's file).
    pub control: Region,
    /// The supervisor's sides and slots of all rings (supervisor's file).
    pub rings: Region,
    /// Bytes per slot in `rings`, a multiple of 128.
    pub ring_stride: u64,
    /// Offset of the from-agent ring's consumer side within a slot's part of `rings`.
    pub from_agent_consumer: u64,
    /// The doorbell's wake word (common file).
    pub doorbell: Region,
    /// The supervisor's page buffers (supervisor's file).
    pub supervisor_pool: PoolLayout,
    /// Each agent's page buffers (its slot file).
    pub slot_pool: PoolLayout,
    /// The topics (supervisor's file): `topics × topic_stride` bytes.
    pub bus: Region,
    /// Bytes per topic in `bus`: its name line, its header, its slots.
    pub topic_stride: u64,
    /// The agent's sleep flag for each topic (each slot file).
    pub slot_bus_flags: Region,
    /// The shared state's entries (supervisor's file).
    pub state: Region,
    /// The supervisor's reply to the agent's strong writes (each slot file).
    pub slot_state_reply: Region,
}

/// Where one pool of page buffers lies in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLayout {
    /// Buffers in the pool.
    pub count: u32,
    /// Owner words and buffer metadata.
    pub ledger: Region,
    /// Offset of the buffer metadata (the owner words are at the ledger's start).
    pub metas_offset: u64,
    /// The buffers.
    pub buffers: Region,
}

impl PoolLayout {
    /// A pool of `count` buffers of `size` bytes from `start` (page aligned): the ledger,
    /// then the buffers on a page boundary. `None` on overflow.
    fn at(start: u64, count: u32, size: u32) -> Option<PoolLayout> {
        let n = u64::from(count);
        let owners = round_up(start, PAGE)?;
        let metas_offset = round_up(owners.checked_add(n * 4)?, LINE)?;
        let ledger_end = metas_offset.checked_add(n * META)?;
        let buffers = Region {
            offset: round_up(ledger_end, PAGE)?,
            size: n.checked_mul(u64::from(size))?,
        };
        buffers.offset.checked_add(buffers.size)?;
        Some(PoolLayout {
            count,
            ledger: Region {
                offset: owners,
                size: ledger_end - owners,
            },
            metas_offset,
            buffers,
        })
    }

    /// First byte past the pool, page aligned.
    fn end(&self) -> Option<u64> {
        round_up(self.buffers.offset + self.buffers.size, PAGE)
    }
}

fn round_up(x: u64, to: u64) -> Option<u64> {
    x.checked_add(to - 1).map(|v| v / to * to)
}

impl Layout {
    /// Computes the layout, or says why the configuration cannot have one.
    pub fn compute(config: SegmentConfig) -> Result<Layout, SegmentError> {
        let bad = |reason: String| Err(SegmentError::BadConfig(reason));
        let c = config;
        if c.agent_slots == 0 || c.agent_slots > MAX_AGENT_SLOTS {
            return bad(format!(
                "agent_slots is {}, must be 1..={MAX_AGENT_SLOTS}",
                c.agent_slots
            ));
        }
        if !c.ring_capacity.is_power_of_two() || c.ring_capacity > MAX_RING_CAPACITY {
            return bad(format!(
                "ring_capacity is {}, must be a power of two up to {MAX_RING_CAPACITY}",
                c.ring_capacity
            ));
        }
        if c.buffer_size < 64 || c.buffer_size % 64 != 0 {
            return bad(format!(
                "buffer_size is {}, must be a positive multiple of 64",
                c.buffer_size
            ));
        }
        if c.topics > MAX_TOPICS {
            return bad(format!("topics is {}, at most {MAX_TOPICS}", c.topics));
        }
        if !c.topic_capacity.is_power_of_two()
            || !(2..=MAX_TOPIC_CAPACITY).contains(&c.topic_capacity)
        {
            return bad(format!(
                "topic_capacity is {}, must be a power of two from 2 to {MAX_TOPIC_CAPACITY}",
                c.topic_capacity
            ));
        }
        if !c.state_entries.is_power_of_two() || c.state_entries > MAX_STATE_ENTRIES {
            return bad(format!(
                "state_entries is {}, must be a power of two up to {MAX_STATE_ENTRIES}",
                c.state_entries
            ));
        }
        if c.buffer_count == 0 || c.agent_buffers == 0 {
            return bad(format!(
                "buffer_count is {} and agent_buffers {}: each pool needs a buffer",
                c.buffer_count, c.agent_buffers
            ));
        }
        let indices =
            u64::from(c.buffer_count) + u64::from(c.agent_buffers) * u64::from(c.agent_slots);
        if indices >= u64::from(u32::MAX) {
            return bad(format!(
                "{indices} page buffers in all: handles name fewer than {}",
                u32::MAX
            ));
        }
        let overflow = || SegmentError::BadConfig("segment size overflows".into());
        let desc = std::mem::size_of::<Descriptor>() as u64;
        let slots = c.agent_slots as u64;
        let ring_slots = c.ring_capacity as u64 * desc;

        // The supervisor's file.
        let control = Region {
            offset: HEADER_REGION,
            size: std::mem::size_of::<Control>() as u64,
        };
        let from_agent_consumer = round_up(SIDE + ring_slots, LINE).ok_or_else(overflow)?;
        let ring_stride = round_up(from_agent_consumer + SIDE, LINE).ok_or_else(overflow)?;
        let rings = Region {
            offset: HEADER_REGION + PAGE,
            size: ring_stride.checked_mul(slots).ok_or_else(overflow)?,
        };
        let topic_stride = TOPIC_NAME
            + BUS_HEADER
            + u64::from(c.topic_capacity) * std::mem::size_of::<BusSlot>() as u64;
        let bus = Region {
            offset: round_up(rings.offset + rings.size, PAGE).ok_or_else(overflow)?,
            size: topic_stride * u64::from(c.topics),
        };
        let state = Region {
            offset: round_up(bus.offset + bus.size, PAGE).ok_or_else(overflow)?,
            size: u64::from(c.state_entries) * std::mem::size_of::<KvEntry>() as u64,
        };
        let supervisor_pool = state
            .offset
            .checked_add(state.size)
            .and_then(|end| PoolLayout::at(end, c.buffer_count, c.buffer_size))
            .ok_or_else(overflow)?;
        let supervisor_size = supervisor_pool.end().ok_or_else(overflow)?;

        // A slot file.
        let slot_bus_flags = Region {
            offset: round_up(SLOT_FROM_AGENT_SLOTS + ring_slots, LINE).ok_or_else(overflow)?,
            size: u64::from(c.topics) * std::mem::size_of::<SleepFlag>() as u64,
        };
        let slot_state_reply = Region {
            offset: round_up(slot_bus_flags.offset + slot_bus_flags.size, LINE)
                .ok_or_else(overflow)?,
            size: std::mem::size_of::<StateReply>() as u64,
        };
        let slot_pool = PoolLayout::at(
            slot_state_reply.offset + slot_state_reply.size,
            c.agent_buffers,
            c.buffer_size,
        )
        .ok_or_else(overflow)?;
        let slot_size = slot_pool.end().ok_or_else(overflow)?;

        // The common file.
        let doorbell = Region {
            offset: 0,
            size: std::mem::size_of::<SharedLine<WakeWord>>() as u64,
        };
        let common_size = PAGE;
        let total_size = slot_size
            .checked_mul(slots)
            .and_then(|s| s.checked_add(supervisor_size))
            .and_then(|s| s.checked_add(common_size))
            .ok_or_else(overflow)?;
        if total_size > isize::MAX as u64 {
            return Err(overflow());
        }
        Ok(Layout {
            config,
            total_size,
            supervisor_size,
            slot_size,
            common_size,
            control,
            rings,
            ring_stride,
            from_agent_consumer,
            doorbell,
            supervisor_pool,
            slot_pool,
            bus,
            topic_stride,
            slot_bus_flags,
            state,
            slot_state_reply,
        })
    }

    /// Buffers in the whole index space: the supervisor's pool, then every slot's.
    pub fn buffer_indices(&self) -> u32 {
        self.config.buffer_count + self.config.agent_buffers * self.config.agent_slots
    }

    /// Offset of `slot`'s ring parts in the supervisor's file.
    fn ring_base(&self, slot: u32) -> u64 {
        self.rings.offset + slot as u64 * self.ring_stride
    }

    /// Where a ring's producer side, consumer side and slots are: `(file, offset)` each.
    fn ring_parts(&self, slot: u32, dir: Direction) -> [(Owned, u64); 3] {
        let base = self.ring_base(slot);
        match dir {
            Direction::ToAgent => [
                (Owned::Supervisor, base),
                (Owned::Slot(slot), SLOT_TO_AGENT_CONSUMER),
                (Owned::Supervisor, base + SIDE),
            ],
            Direction::FromAgent => [
                (Owned::Slot(slot), SLOT_FROM_AGENT_PRODUCER),
                (Owned::Supervisor, base + self.from_agent_consumer),
                (Owned::Slot(slot), SLOT_FROM_AGENT_SLOTS),
            ],
        }
    }
}

/// Which file a part of the segment lives in (the common file has accessors of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owned {
    Supervisor,
    Slot(u32),
}

/// Why a segment could not be created or opened. Each variant says exactly what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The configuration has no valid layout.
    #[error("bad segment configuration: {0}")]
    BadConfig(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// The operation.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The memory could not be reserved up front.
    #[error("cannot reserve {size} bytes for the shared segment (out of memory or tmpfs limit): {source}")]
    Reserve {
        /// Bytes asked for.
        size: u64,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// More than the host has available.
    #[error("shared segment of {size} bytes exceeds the {available} bytes of memory available")]
    InsufficientMemory {
        /// Bytes asked for.
        size: u64,
        /// `MemAvailable` at the time.
        available: u64,
    },
    /// The file is smaller than a header.
    #[error("segment is {size} bytes, smaller than its {HEADER_REGION}-byte header")]
    TooSmall {
        /// Actual size.
        size: u64,
    },
    /// Not a segment of ours.
    #[error("wrong magic {found:02x?}, expected {MAGIC:02x?}")]
    WrongMagic {
        /// What was found.
        found: [u8; 8],
    },
    /// A segment of another layout version.
    #[error("layout version {found}, this build understands {VERSION}")]
    WrongVersion {
        /// What was found.
        found: u32,
    },
    /// A structure size that differs from this build's.
    #[error("{what} is {found} bytes in the segment, {expected} in this build")]
    SizeMismatch {
        /// Which structure.
        what: &'static str,
        /// In the segment.
        found: u64,
        /// In this build.
        expected: u64,
    },
    /// A region past the end of its file.
    #[error("region {name} at {offset}+{size} lies outside its {total}-byte file")]
    RegionOutOfBounds {
        /// The region.
        name: &'static str,
        /// Its offset.
        offset: u64,
        /// Its size.
        size: u64,
        /// Segment size.
        total: u64,
    },
    /// A region where the configuration says it cannot be.
    #[error("region {name} is {found:?}, the header's configuration puts it at {expected:?}")]
    RegionMismatch {
        /// The region.
        name: &'static str,
        /// In the header.
        found: Region,
        /// Computed.
        expected: Region,
    },
    /// The creator has not finished building it.
    #[error("segment is not ready (still being built, or its creator died)")]
    NotReady,
    /// An index past the configured slots.
    #[error("agent slot {slot} out of range (segment has {slots})")]
    NoSuchSlot {
        /// Requested.
        slot: u32,
        /// Configured.
        slots: u32,
    },
    /// That slot's file is not mapped in this process (an agent has its own slot only).
    #[error("the file of agent slot {slot} is not mapped in this process")]
    NotMapped {
        /// Requested.
        slot: u32,
    },
    /// This process already holds that end of that ring.
    #[error("the {side} end of ring {dir:?} of slot {slot} is already held in this process")]
    EndpointTaken {
        /// Slot.
        slot: u32,
        /// Ring.
        dir: Direction,
        /// "producer" or "consumer".
        side: &'static str,
    },
    /// The ring's counters are inconsistent.
    #[error("ring {dir:?} of slot {slot}: {source}")]
    Ring {
        /// Slot.
        slot: u32,
        /// Ring.
        dir: Direction,
        /// The inconsistency.
        #[source]
        source: crate::shm::ring::RingCorrupt,
    },
}

fn os(what: &'static str) -> impl FnOnce(nix::Error) -> SegmentError {
    move |e| SegmentError::Os {
        what,
        source: std::io::Error::from(e),
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SegmentError {
    move |source| SegmentError::Os { what, source }
}

/// One of the segment's files, mapped.
#[derive(Debug)]
struct Mapped {
    fd: OwnedFd,
    map: memmap2::MmapRaw,
}

impl Mapped {
    /// Maps all of `fd` (`len` bytes), read-write or read-only.
    fn new(fd: OwnedFd, len: u64, writable: bool) -> Result<Mapped, SegmentError> {
        let file = File::from(fd.try_clone().map_err(io("dup segment fd"))?);
        let opts = {
            let mut o = memmap2::MmapOptions::new();
            o.len(len as usize);
            o
        };
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(io("mmap segment"))?;
        Ok(Mapped { fd, map })
    }
}

/// The descriptors an agent inherits, by number in the agent's process: the supervisor's
/// file (which it can map read-only only), its slot's file, and the common file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentFds {
    /// The supervisor's file.
    pub segment: RawFd,
    /// The agent's slot file.
    pub slot_file: RawFd,
    /// The common file.
    pub common: RawFd,
}

impl AgentFds {
    /// The three descriptors.
    pub fn all(&self) -> [RawFd; 3] {
        [self.segment, self.slot_file, self.common]
    }

    /// As command-line arguments: `--segment-fd N --slot-fd N --common-fd N`.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--segment-fd".into(),
            self.segment.to_string(),
            "--slot-fd".into(),
            self.slot_file.to_string(),
            "--common-fd".into(),
            self.common.to_string(),
        ]
    }
}

/// A mapped segment: all of it in the supervisor, an agent's share in an agent.
#[derive(Debug)]
pub struct Segment {
    layout: Layout,
    supervisor: Mapped,
    common: Mapped,
    /// Slot files: every one in the supervisor, its own in an agent.
    slots: Box<[Option<Mapped>]>,
    /// Ring endpoints held in this process: `(slot * 2 + dir) * 2 + side`.
    endpoints: Box<[AtomicBool]>,
    /// Whether this process created the segment (the supervisor, which maps every file
    /// writable) rather than opened it as an agent.
    creator: bool,
}

/// A new memory file of `size` bytes, sealed against resizing (and against further seals
/// unless `more_seals`).
fn new_file(name: &str, size: u64) -> Result<OwnedFd, SegmentError> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(os("memfd_create"))?;
    nix::unistd::ftruncate(&fd, size as i64).map_err(os("ftruncate"))?;
    Ok(fd)
}

fn seal(fd: &OwnedFd, flags: nix::fcntl::SealFlag) -> Result<(), SegmentError> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_ADD_SEALS(flags))
        .map(drop)
        .map_err(os("seal segment"))
}

mod state;
mod topics;
pub use state::{SegmentKv, StateReply};
pub use topics::{SegmentBus, TopicError, TOPIC_NAME_MAX};

impl Segment {
    /// Creates, reserves, seals, maps and initialises a new segment.
    pub fn create(config: SegmentConfig) -> Result<Arc<Segment>, SegmentError> {
        let (seg, rest) = Self::create_deferred(config)?;
        rest.wait()?;
        Ok(seg)
    }

    /// As [`Segment::create`], but the page buffers (most of the segment) are reserved by
    /// a thread, while the caller starts its agents. [`Reservation::wait`] says how that
    /// went; nothing may lend a buffer before it has returned `Ok`.
    pub fn create_deferred(
        config: SegmentConfig,
    ) -> Result<(Arc<Segment>, Reservation), SegmentError> {
        use nix::fcntl::SealFlag;
        let layout = Layout::compute(config)?;
        // NB: fallocate on a memfd does not fail fast when memory is short: shmem allocates
        // page by page until the host runs out, and the OOM killer picks a victim. So refuse a
        // size beyond what the host has available before reserving anything.
        if let Some(available) = available_memory() {
            if layout.total_size > available {
                return Err(SegmentError::InsufficientMemory {
                    size: layout.total_size,
                    available,
                });
            }
        }
        let fixed = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
        // NB: reserving the pages up front is what turns "no memory" into an error here
        // instead of a SIGBUS on first touch of some page later. It also charges them to
        // the creator's memory cgroup, not to whichever agent touches a page first.
        //
        // An agent's pool is not reserved: its pages are allocated as the agent first writes
        // them (it takes its lowest free buffers first, so it touches only its peak use), and
        // charged to the agent's own memory cgroup. A shortage then hits that agent.
        let total = layout.total_size;
        let sup_fd = new_file("neuralflow-swarm", layout.supervisor_size)?;
        let buffers = layout.supervisor_pool.buffers;
        reserve(&sup_fd, 0, buffers.offset, total)?;
        seal(&sup_fd, fixed)?;
        let mut slots = Vec::with_capacity(layout.config.agent_slots as usize);
        for _ in 0..layout.config.agent_slots {
            let fd = new_file("neuralflow-swarm-slot", layout.slot_size)?;
            reserve(&fd, 0, layout.slot_pool.buffers.offset, total)?;
            seal(&fd, fixed | SealFlag::F_SEAL_SEAL)?;
            slots.push(Some(Mapped::new(fd, layout.slot_size, true)?));
        }
        let common_fd = new_file("neuralflow-swarm-common", layout.common_size)?;
        reserve(&common_fd, 0, layout.common_size, total)?;
        seal(&common_fd, fixed | SealFlag::F_SEAL_SEAL)?;
        let rest_fd = sup_fd.try_clone().map_err(io("dup segment fd"))?;
        let rest = std::thread::Builder::new()
            .name("swarm-reserve".into())
            .spawn(move || reserve(&rest_fd, buffers.offset, buffers.size, total))
            .map_err(io("spawn reservation thread"))?;
        let supervisor = Mapped::new(sup_fd, layout.supervisor_size, true)?;
        // Once mapped here, no one can map the supervisor's file writable again (nor write
        // it with write(2)): agents get it read-only, whatever they try.
        seal(
            &supervisor.fd,
            SealFlag::F_SEAL_FUTURE_WRITE | SealFlag::F_SEAL_SEAL,
        )?;
        let seg = Segment {
            layout,
            supervisor,
            common: Mapped::new(common_fd, layout.common_size, true)?,
            slots: slots.into_boxed_slice(),
            endpoints: new_endpoints(layout.config.agent_slots),
            creator: true,
        };
        seg.initialise();
        Ok((Arc::new(seg), Reservation(rest)))
    }

    /// Opens the segment as the agent in `slot`, from the three files it inherited (see
    /// [`AgentFds`]), validating everything in the header and each file's size. The
    /// supervisor's file is mapped read-only.
    pub fn open_agent(
        slot: u32,
        segment: OwnedFd,
        slot_file: OwnedFd,
        common: OwnedFd,
    ) -> Result<Arc<Segment>, SegmentError> {
        let size = file_size(&segment)?;
        if size < HEADER_REGION {
            return Err(SegmentError::TooSmall { size });
        }
        let supervisor = Mapped::new(segment, size, false)?;
        // SAFETY: the mapping is at least HEADER_REGION bytes and page aligned, so a
        // SegmentHeader (256 bytes, align 8) fits at offset 0. Its fields are integers (and
        // one atomic), valid for any bit pattern; it is only read.
        let header = unsafe { &*(supervisor.map.as_ptr() as *const SegmentHeader) };
        let layout = validate(header, size)?;
        if slot >= layout.config.agent_slots {
            return Err(SegmentError::NoSuchSlot {
                slot,
                slots: layout.config.agent_slots,
            });
        }
        for (what, fd, expected) in [
            ("slot file", &slot_file, layout.slot_size),
            ("common file", &common, layout.common_size),
        ] {
            let found = file_size(fd)?;
            if found != expected {
                return Err(SegmentError::SizeMismatch {
                    what,
                    found,
                    expected,
                });
            }
        }
        let mut slots: Vec<Option<Mapped>> = (0..layout.config.agent_slots).map(|_| None).collect();
        slots[slot as usize] = Some(Mapped::new(slot_file, layout.slot_size, true)?);
        Ok(Arc::new(Segment {
            layout,
            supervisor,
            common: Mapped::new(common, layout.common_size, true)?,
            slots: slots.into_boxed_slice(),
            endpoints: new_endpoints(layout.config.agent_slots),
            creator: false,
        }))
    }

    /// [`Segment::open_agent`] from inherited descriptor numbers. Numbers that are not
    /// distinct (a command line naming one descriptor twice) are refused.
    ///
    /// # Safety
    ///
    /// The descriptors must be open and owned by nothing else in this process.
    pub unsafe fn open_agent_raw(slot: u32, fds: AgentFds) -> Result<Arc<Segment>, SegmentError> {
        let [a, b, c] = fds.all();
        if a == b || b == c || a == c {
            return Err(SegmentError::BadConfig(format!(
                "the segment's descriptors must be distinct, not {fds:?}"
            )));
        }
        // SAFETY: open and unowned, guaranteed by the caller; distinct, checked above, so
        // each is owned once.
        let own = |fd| unsafe { OwnedFd::from_raw_fd(fd) };
        Self::open_agent(slot, own(fds.segment), own(fds.slot_file), own(fds.common))
    }

    /// The descriptors (numbers in this process) the agent in `slot` must inherit. Only
    /// the supervisor, which has every slot's file, can give them.
    pub fn agent_fds(&self, slot: u32) -> Result<AgentFds, SegmentError> {
        Ok(AgentFds {
            segment: self.supervisor.fd.as_raw_fd(),
            slot_file: self.slot_file(slot)?.fd.as_raw_fd(),
            common: self.common.fd.as_raw_fd(),
        })
    }

    /// Duplicates of the descriptors of `slot`'s agent, for tests that open the segment as
    /// that agent in this process.
    pub fn dup_agent_fds(&self, slot: u32) -> Result<(OwnedFd, OwnedFd, OwnedFd), SegmentError> {
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(io("dup segment fd"));
        Ok((
            dup(&self.supervisor.fd)?,
            dup(&self.slot_file(slot)?.fd)?,
            dup(&self.common.fd)?,
        ))
    }

    /// Phase two of creation: the memory is zero (fresh memfds), which is a valid empty
    /// state for rings, heartbeats and the ledger; write the header, then publish `ready`.
    fn initialise(&self) {
        let l = &self.layout;
        let h = SegmentHeader {
            magic: MAGIC,
            version: VERSION,
            header_size: std::mem::size_of::<SegmentHeader>() as u32,
            supervisor_size: l.supervisor_size,
            slot_size: l.slot_size,
            common_size: l.common_size,
            agent_slots: l.config.agent_slots,
            ring_capacity: l.config.ring_capacity,
            descriptor_size: std::mem::size_of::<Descriptor>() as u32,
            buffer_size: l.config.buffer_size,
            buffer_count: l.config.buffer_count,
            ready: AtomicU32::new(0),
            agent_buffers: l.config.agent_buffers,
            topics: l.config.topics,
            topic_capacity: l.config.topic_capacity,
            state_entries: l.config.state_entries,
            control: l.control,
            rings: l.rings,
            doorbell: l.doorbell,
            pool_ledger: l.supervisor_pool.ledger,
            pool_buffers: l.supervisor_pool.buffers,
            slot_ledger: l.slot_pool.ledger,
            slot_buffers: l.slot_pool.buffers,
            bus: l.bus,
            slot_bus_flags: l.slot_bus_flags,
            state: l.state,
            slot_state_reply: l.slot_state_reply,
        };
        let p = self.supervisor.map.as_mut_ptr() as *mut SegmentHeader;
        // SAFETY: offset 0 of a page-aligned, writable mapping of at least HEADER_REGION
        // bytes; no other process has the descriptor yet, so nobody reads it concurrently.
        unsafe { p.write(h) };
        // Release: SYNC POINT (segment built): the header and zeroed regions are complete
        // before `ready` reads 1; pairs with the Acquire in `validate`.
        self.header().ready.store(1, Ordering::Release);
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: see `open_agent`; the header lives at offset 0 for the mapping's lifetime.
        unsafe { &*(self.supervisor.map.as_ptr() as *const SegmentHeader) }
    }

    /// Overwrites one byte of the header, as a broken creator could (the header cannot be
    /// written once agents have it). For tests of [`Segment::open_agent`]'s checks.
    #[doc(hidden)]
    pub fn scribble_header_for_tests(&self, offset: usize, byte: u8) {
        assert!(offset < HEADER_REGION as usize);
        // SAFETY: inside the supervisor's writable mapping (this is the creator's segment;
        // an agent's mapping is read-only and would fault); single-threaded test use.
        unsafe {
            self.supervisor
                .map
                .as_mut_ptr()
                .add(offset)
                .write_volatile(byte)
        };
    }

    /// Where everything is (this process's own copy, not reread from the segment).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of agent slots.
    pub fn agent_slots(&self) -> u32 {
        self.layout.config.agent_slots
    }

    fn check_slot(&self, slot: u32) -> Result<(), SegmentError> {
        if slot >= self.layout.config.agent_slots {
            return Err(SegmentError::NoSuchSlot {
                slot,
                slots: self.layout.config.agent_slots,
            });
        }
        Ok(())
    }

    fn slot_file(&self, slot: u32) -> Result<&Mapped, SegmentError> {
        self.check_slot(slot)?;
        self.slots[slot as usize]
            .as_ref()
            .ok_or(SegmentError::NotMapped { slot })
    }

    fn file(&self, which: Owned) -> Result<&Mapped, SegmentError> {
        match which {
            Owned::Supervisor => Ok(&self.supervisor),
            Owned::Slot(slot) => self.slot_file(slot),
        }
    }

    fn at<T>(&self, which: Owned, offset: u64) -> Result<*mut T, SegmentError> {
        let f = self.file(which)?;
        debug_assert!(offset + std::mem::size_of::<T>() as u64 <= f.map.len() as u64);
        // SAFETY: callers pass offsets from the validated layout, inside that file's
        // mapping.
        Ok(unsafe { f.map.as_mut_ptr().add(offset as usize) as *mut T })
    }

    /// The supervisor's words (read-only in agents).
    pub fn control(&self) -> &Control {
        // SAFETY: the control region lies at a page-aligned offset inside the supervisor's
        // file and is `size_of::<Control>()` bytes; atomics only, valid for any bit pattern.
        unsafe {
            &*(self
                .supervisor
                .map
                .as_ptr()
                .add(self.layout.control.offset as usize) as *const Control)
        }
    }

    /// The supervisor's doorbell: agents wake it (the word is in the common file), the
    /// supervisor sleeps on it (its flag is in the supervisor's file). A hint only: a
    /// misbehaving agent can ring it too often or not at all, never change what the
    /// supervisor reads from the rings.
    pub fn doorbell(&self) -> WaitPair<'_> {
        // SAFETY: the doorbell region is the first line of the common file, page aligned;
        // atomics only.
        let word = unsafe {
            &*(self
                .common
                .map
                .as_ptr()
                .add(self.layout.doorbell.offset as usize)
                as *const SharedLine<WakeWord>)
        };
        WaitPair {
            word,
            flag: &self.control().doorbell_sleeping,
        }
    }

    /// The heartbeat line of `slot` (in that slot's file).
    pub fn heartbeat(&self, slot: u32) -> Result<&HeartbeatWord, SegmentError> {
        let p = self.at::<HeartbeatWord>(Owned::Slot(slot), SLOT_HEARTBEAT)?;
        // SAFETY: offset 0 of the slot's file, page aligned, 64 bytes; zeroed or
        // agent-written memory is a valid `HeartbeatWord` (atomics only).
        Ok(unsafe { &*p })
    }

    /// Both sides of one ring (for monitoring and resets): needs both files, so only the
    /// supervisor has them.
    pub fn ring_sides(&self, slot: u32, dir: Direction) -> Result<RingSides<'_>, SegmentError> {
        self.check_slot(slot)?;
        let [(pf, po), (cf, co), _] = self.layout.ring_parts(slot, dir);
        let (p, c) = (self.at::<RingSide>(pf, po)?, self.at::<RingSide>(cf, co)?);
        // SAFETY: both sides lie inside their files at 128-byte aligned offsets of the
        // layout; atomics only, valid for any bit pattern.
        Ok(unsafe {
            RingSides {
                producer: &*p,
                consumer: &*c,
            }
        })
    }

    fn endpoint(
        self: &Arc<Self>,
        slot: u32,
        dir: Direction,
        side: usize,
    ) -> Result<SegmentRing, SegmentError> {
        self.check_slot(slot)?;
        let [(pf, po), (cf, co), (sf, so)] = self.layout.ring_parts(slot, dir);
        let (producer, consumer, slots) = (
            self.at::<RingSide>(pf, po)?,
            self.at::<RingSide>(cf, co)?,
            self.at::<UnsafeCell<Descriptor>>(sf, so)?,
        );
        let claim = (slot as usize * 2 + dir as usize) * 2 + side;
        // AcqRel: SYNC POINT (endpoint handover): a previous holder in this process released
        // the endpoint (its last ring accesses) before we take it; pairs with the Release in
        // `SegmentRing::drop`.
        if self.endpoints[claim].swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(SegmentError::EndpointTaken {
                slot,
                dir,
                side: if side == 0 { "producer" } else { "consumer" },
            });
        }
        Ok(SegmentRing {
            segment: self.clone(),
            producer,
            consumer,
            slots,
            capacity: self.layout.config.ring_capacity as usize,
            claim,
        })
    }

    /// The producing end of a ring. At most one per ring in this process.
    pub fn producer(
        self: &Arc<Self>,
        slot: u32,
        dir: Direction,
    ) -> Result<Producer<Descriptor, SegmentRing>, SegmentError> {
        Producer::attach(self.endpoint(slot, dir, 0)?).map_err(|source| SegmentError::Ring {
            slot,
            dir,
            source,
        })
    }

    /// The consuming end of a ring. At most one per ring in this process.
    pub fn consumer(
        self: &Arc<Self>,
        slot: u32,
        dir: Direction,
    ) -> Result<Consumer<Descriptor, SegmentRing>, SegmentError> {
        Consumer::attach(self.endpoint(slot, dir, 1)?).map_err(|source| SegmentError::Ring {
            slot,
            dir,
            source,
        })
    }

    /// A view of the page-buffer slab; `cursor_start` spreads different processes' scans.
    pub fn slab(self: &Arc<Self>, cursor_start: u32) -> Slab<SegmentSlab> {
        Slab::new(
            SegmentSlab {
                segment: self.clone(),
            },
            cursor_start,
        )
    }
}

/// A file's size.
fn file_size(fd: &OwnedFd) -> Result<u64, SegmentError> {
    Ok(nix::sys::stat::fstat(fd.as_fd())
        .map_err(os("fstat segment"))?
        .st_size as u64)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn new_endpoints(slots: u32) -> Box<[AtomicBool]> {
    (0..slots as usize * 4)
        .map(|_| AtomicBool::new(false))
        .collect()
}

fn validate(h: &SegmentHeader, actual_size: u64) -> Result<Layout, SegmentError> {
    // Acquire: SYNC POINT (segment built): pairs with the Release in `initialise`.
    if h.ready.load(Ordering::Acquire) != 1 {
        // Check the magic first: an unrelated file is better reported as such.
        if h.magic != MAGIC {
            return Err(SegmentError::WrongMagic { found: h.magic });
        }
        return Err(SegmentError::NotReady);
    }
    if h.magic != MAGIC {
        return Err(SegmentError::WrongMagic { found: h.magic });
    }
    if h.version != VERSION {
        return Err(SegmentError::WrongVersion { found: h.version });
    }
    let sizes = [
        (
            "segment header",
            h.header_size as u64,
            std::mem::size_of::<SegmentHeader>(),
        ),
        (
            "descriptor",
            h.descriptor_size as u64,
            std::mem::size_of::<Descriptor>(),
        ),
    ];
    for (what, found, expected) in sizes {
        if found != expected as u64 {
            return Err(SegmentError::SizeMismatch {
                what,
                found,
                expected: expected as u64,
            });
        }
    }
    if h.supervisor_size != actual_size {
        return Err(SegmentError::SizeMismatch {
            what: "segment (header's size vs. file)",
            found: h.supervisor_size,
            expected: actual_size,
        });
    }
    let regions = [
        ("control", h.control, h.supervisor_size),
        ("rings", h.rings, h.supervisor_size),
        ("doorbell", h.doorbell, h.common_size),
        ("pool ledger", h.pool_ledger, h.supervisor_size),
        ("pool buffers", h.pool_buffers, h.supervisor_size),
        ("slot ledger", h.slot_ledger, h.slot_size),
        ("slot buffers", h.slot_buffers, h.slot_size),
        ("bus", h.bus, h.supervisor_size),
        ("slot bus flags", h.slot_bus_flags, h.slot_size),
        ("state", h.state, h.supervisor_size),
        ("slot state reply", h.slot_state_reply, h.slot_size),
    ];
    for (name, r, total) in regions {
        if r.offset.checked_add(r.size).is_none_or(|end| end > total) {
            return Err(SegmentError::RegionOutOfBounds {
                name,
                offset: r.offset,
                size: r.size,
                total,
            });
        }
    }
    let layout = Layout::compute(SegmentConfig {
        agent_slots: h.agent_slots,
        ring_capacity: h.ring_capacity,
        buffer_size: h.buffer_size,
        buffer_count: h.buffer_count,
        agent_buffers: h.agent_buffers,
        topics: h.topics,
        topic_capacity: h.topic_capacity,
        state_entries: h.state_entries,
    })?;
    let expected = [
        layout.control,
        layout.rings,
        layout.doorbell,
        layout.supervisor_pool.ledger,
        layout.supervisor_pool.buffers,
        layout.slot_pool.ledger,
        layout.slot_pool.buffers,
        layout.bus,
        layout.slot_bus_flags,
        layout.state,
        layout.slot_state_reply,
    ];
    for ((name, found, _), expected) in regions.into_iter().zip(expected) {
        if found != expected {
            return Err(SegmentError::RegionMismatch {
                name,
                found,
                expected,
            });
        }
    }
    for (what, found, expected) in [
        ("segment", actual_size, layout.supervisor_size),
        ("slot file (header)", h.slot_size, layout.slot_size),
        ("common file (header)", h.common_size, layout.common_size),
    ] {
        if found != expected {
            return Err(SegmentError::SizeMismatch {
                what,
                found,
                expected,
            });
        }
    }
    Ok(layout)
}

/// A ring inside a segment; keeps the segment mapped while an endpoint lives.
#[derive(Debug)]
pub struct SegmentRing {
    segment: Arc<Segment>,
    producer: *mut RingSide,
    consumer: *mut RingSide,
    slots: *mut UnsafeCell<Descriptor>,
    capacity: usize,
    claim: usize,
}

// SAFETY: the pointers target the segment's mappings, which the `Arc` keeps alive; the ring
// protocol, not thread affinity, governs access; one endpoint per side per process is
// enforced by the `endpoints` claims.
unsafe impl Send for SegmentRing {}

impl Drop for SegmentRing {
    fn drop(&mut self) {
        // Release: SYNC POINT (endpoint handover): pairs with the AcqRel swap in
        // `Segment::endpoint`.
        self.segment.endpoints[self.claim].store(false, std::sync::atomic::Ordering::Release);
    }
}

// SAFETY: both sides and the slots lie inside validated regions of mappings kept alive by
// `segment`; the slot count is the configured power-of-two capacity; `UnsafeCell<Descriptor>`
// is `repr(transparent)` over a `Plain` type, so any bytes there are a valid value. An
// endpoint writes only its own side, which is in a file this process maps writable when it
// is that side's owner (the producer of a to-agent ring is the supervisor, whose file an
// agent maps read-only, and so on); the other side is only read.
unsafe impl RingStorage<Descriptor> for SegmentRing {
    fn sides(&self) -> RingSides<'_> {
        // SAFETY: see the impl's safety comment.
        unsafe {
            RingSides {
                producer: &*self.producer,
                consumer: &*self.consumer,
            }
        }
    }
    fn slots(&self) -> &[UnsafeCell<Descriptor>] {
        // SAFETY: see the impl's safety comment.
        unsafe { std::slice::from_raw_parts(self.slots, self.capacity) }
    }
}

/// The page buffers of a segment, by pool: the supervisor's in its file, each agent's in
/// its slot file. In an agent, the pools of other agents are not found (not mapped), and
/// the supervisor's pool is mapped read-only.
#[derive(Debug, Clone)]
pub struct SegmentSlab {
    segment: Arc<Segment>,
}

// SAFETY: every located buffer's words and bytes lie in validated, non-overlapping regions
// of a mapping that `segment` keeps alive (the pool's ledger and buffers regions, at the
// offsets of the layout, which was computed here or compared with the header); `locate`
// returns `None` past the index space and for a slot file this process does not map; each
// pool lies below `buffer_indices()`, which `Layout::compute` keeps below `u32::MAX`, and is
// offered only where its file is mapped writable here (the supervisor's pool in its
// creator, a slot's where its slot file is mapped, always read-write).
unsafe impl SlabStorage for SegmentSlab {
    fn count(&self) -> u32 {
        self.segment.layout.buffer_indices()
    }
    fn buffer_size(&self) -> usize {
        self.segment.layout.config.buffer_size as usize
    }
    fn locate(&self, index: u32) -> Option<BufferRef<'_>> {
        let seg = &*self.segment;
        let l = &seg.layout;
        let (file, pool, k) = match index.checked_sub(l.config.buffer_count) {
            None => (&seg.supervisor, &l.supervisor_pool, index),
            Some(j) => {
                let slot = j / l.config.agent_buffers;
                let file = seg.slots.get(slot as usize)?.as_ref()?;
                (file, &l.slot_pool, j % l.config.agent_buffers)
            }
        };
        let k = u64::from(k);
        let base = file.map.as_mut_ptr();
        // SAFETY: `k < pool.count`, so the owner word, the metadata entry and the buffer lie
        // inside the pool's ledger and buffers regions of this file's mapping; the words are
        // atomics, valid for any bit pattern.
        unsafe {
            Some(BufferRef {
                owner: &*(base.add((pool.ledger.offset + k * 4) as usize) as *const AtomicU32),
                meta: &*(base.add((pool.metas_offset + k * META) as usize) as *const BufferMeta),
                data: base
                    .add((pool.buffers.offset + k * u64::from(l.config.buffer_size)) as usize),
            })
        }
    }
    fn pool(&self, owner: Owner) -> std::ops::Range<u32> {
        // Only pools this process maps writable: in an agent, its own alone (the
        // supervisor's is read-only there, the others are not mapped).
        let seg = &*self.segment;
        let c = &seg.layout.config;
        let none = c.buffer_count..c.buffer_count;
        match owner {
            Owner::Supervisor if seg.creator => 0..c.buffer_count,
            Owner::Agent(slot) if seg.slots.get(slot as usize).is_some_and(Option::is_some) => {
                let start = c.buffer_count + slot * c.agent_buffers;
                start..start + c.agent_buffers
            }
            _ => none,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn small() -> SegmentConfig {
        SegmentConfig {
            agent_slots: 2,
            ring_capacity: 16,
            buffer_size: 256,
            buffer_count: 8,
            agent_buffers: 4,
            topics: 4,
            topic_capacity: 256,
            state_entries: 1024,
        }
    }

    fn reopen(seg: &Segment, slot: u32) -> Result<Arc<Segment>, SegmentError> {
        let (s, f, c) = seg.dup_agent_fds(slot)?;
        Segment::open_agent(slot, s, f, c)
    }

    fn header_mut(seg: &Segment) -> *mut SegmentHeader {
        seg.supervisor.map.as_mut_ptr() as *mut SegmentHeader
    }

    #[test]
    fn create_then_open_agrees() {
        let seg = Segment::create(small()).unwrap();
        let other = reopen(&seg, 1).unwrap();
        assert_eq!(other.layout(), seg.layout());
        // An agent has its own slot's file only.
        assert!(other.heartbeat(1).is_ok());
        assert!(matches!(
            other.heartbeat(0),
            Err(SegmentError::NotMapped { slot: 0 })
        ));
        assert!(matches!(
            other.ring_sides(0, Direction::ToAgent),
            Err(SegmentError::NotMapped { slot: 0 })
        ));
    }

    #[test]
    fn segment_is_sealed_against_resizing() {
        let seg = Segment::create(small()).unwrap();
        let (s, f, c) = seg.dup_agent_fds(0).unwrap();
        for fd in [&s, &f, &c] {
            assert!(nix::unistd::ftruncate(fd, 1).is_err());
            assert!(nix::unistd::ftruncate(fd, 1 << 30).is_err());
        }
    }

    /// Nobody can map the supervisor's file writable or write it once the supervisor has
    /// it, so an agent, whatever it tries, can only read it.
    #[test]
    fn the_supervisors_file_cannot_be_written_by_anyone_else() {
        let seg = Segment::create(small()).unwrap();
        let (s, _, _) = seg.dup_agent_fds(0).unwrap();
        let len = seg.layout().supervisor_size as usize;
        let writable = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(&File::from(s.try_clone().unwrap()));
        assert!(writable.is_err(), "a writable mapping was allowed");
        assert!(
            nix::unistd::write(&s, b"x").is_err(),
            "write(2) was allowed"
        );
        let ro = memmap2::MmapOptions::new()
            .len(len)
            .map_raw_read_only(&File::from(s))
            .unwrap();
        assert_eq!(ro.as_ptr() as usize % 4096, 0);
        // SAFETY: reading the first byte of a live read-only mapping.
        assert_eq!(unsafe { *ro.as_ptr() }, MAGIC[0]);
    }

    #[test]
    fn open_reports_exactly_what_is_wrong() {
        let seg = Segment::create(small()).unwrap();
        let h = header_mut(&seg);
        // SAFETY: single-threaded; we restore every field we change.
        unsafe {
            (*h).magic[0] = b'X';
            assert!(matches!(
                reopen(&seg, 0),
                Err(SegmentError::WrongMagic { .. })
            ));
            (*h).magic = MAGIC;
            (*h).version = 99;
            assert!(matches!(
                reopen(&seg, 0),
                Err(SegmentError::WrongVersion { found: 99 })
            ));
            (*h).version = VERSION;
            (*h).pool_buffers.offset = u64::MAX - 10;
            let e = reopen(&seg, 0).unwrap_err();
            assert!(
                matches!(
                    e,
                    SegmentError::RegionOutOfBounds {
                        name: "pool buffers",
                        ..
                    }
                ),
                "{e}"
            );
            (*h).pool_buffers.offset = seg.layout().supervisor_pool.buffers.offset;
            (*h).slot_ledger.offset += 128;
            let e = reopen(&seg, 0).unwrap_err();
            assert!(
                matches!(
                    e,
                    SegmentError::RegionMismatch {
                        name: "slot ledger",
                        ..
                    }
                ),
                "{e}"
            );
            (*h).slot_ledger.offset -= 128;
            (*h).agent_buffers += 1;
            assert!(matches!(
                reopen(&seg, 0),
                Err(SegmentError::RegionMismatch { .. } | SegmentError::SizeMismatch { .. })
            ));
            (*h).agent_buffers -= 1;
            (*h).ring_capacity = 3;
            assert!(matches!(reopen(&seg, 0), Err(SegmentError::BadConfig(_))));
            (*h).ring_capacity = 16;
            (*h).supervisor_size += 1;
            assert!(matches!(
                reopen(&seg, 0),
                Err(SegmentError::SizeMismatch { .. })
            ));
            (*h).supervisor_size -= 1;
            (*h).slot_size += 4096;
            assert!(matches!(
                reopen(&seg, 0),
                Err(SegmentError::SizeMismatch { .. })
            ));
            (*h).slot_size -= 4096;
            (*h).ready.store(0, Ordering::Relaxed);
            assert!(matches!(reopen(&seg, 0), Err(SegmentError::NotReady)));
            (*h).ready.store(1, Ordering::Relaxed);
        }
        reopen(&seg, 0).unwrap();
        assert!(matches!(
            reopen(&seg, 2),
            Err(SegmentError::NoSuchSlot { slot: 2, .. })
        ));
        // Another slot's file in place of the common file is refused by its size.
        let (s, f, _) = seg.dup_agent_fds(0).unwrap();
        let (_, f1, _) = seg.dup_agent_fds(1).unwrap();
        assert!(matches!(
            Segment::open_agent(0, s, f, f1),
            Err(SegmentError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn too_small_file_is_refused() {
        let seg = Segment::create(small()).unwrap();
        let (_, f, c) = seg.dup_agent_fds(0).unwrap();
        let fd =
            nix::sys::memfd::memfd_create("t", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 100).unwrap();
        assert!(matches!(
            Segment::open_agent(0, fd, f, c),
            Err(SegmentError::TooSmall { size: 100 })
        ));
    }

    #[test]
    fn huge_reservation_fails_clearly() {
        let cfg = SegmentConfig {
            buffer_size: 1 << 30,
            buffer_count: 1 << 20,
            ..small()
        };
        // A petabyte: refused before anything is reserved (a real fallocate of that size
        // would run the host out of memory before failing).
        let e = Segment::create(cfg).unwrap_err();
        assert!(matches!(e, SegmentError::InsufficientMemory { .. }), "{e}");
    }

    #[test]
    fn endpoints_are_exclusive_per_process() {
        let seg = Segment::create(small()).unwrap();
        let p = seg.producer(0, Direction::ToAgent).unwrap();
        assert!(matches!(
            seg.producer(0, Direction::ToAgent),
            Err(SegmentError::EndpointTaken { .. })
        ));
        drop(p);
        seg.producer(0, Direction::ToAgent).unwrap();
        assert!(matches!(
            seg.producer(5, Direction::ToAgent),
            Err(SegmentError::NoSuchSlot { .. })
        ));
    }

    /// A ring whose two sides are in different files works across the two views: the
    /// supervisor's and an agent's, each writing its own side only.
    #[test]
    fn rings_and_slab_across_the_supervisors_and_an_agents_views() {
        let seg = Segment::create(small()).unwrap();
        let agent = reopen(&seg, 1).unwrap();
        let mut to_agent = seg.producer(1, Direction::ToAgent).unwrap();
        let mut agent_rx = agent.consumer(1, Direction::ToAgent).unwrap();
        let mut agent_tx = agent.producer(1, Direction::FromAgent).unwrap();
        let mut from_agent = seg.consumer(1, Direction::FromAgent).unwrap();
        to_agent.push(Descriptor::new(7, 1, 3)).unwrap();
        let task = agent_rx.pop().unwrap();
        assert_eq!(task.task_id, 7);
        let slab = agent.slab(0);
        let h = slab
            .write_payload(crate::shm::slab::Owner::Agent(1), &[9u8; 700])
            .unwrap();
        let mut d = Descriptor::new(42, 1, 7);
        d.buffer = h.to_raw();
        d.len = 700;
        agent_tx.push(d).unwrap();
        let got = from_agent.pop().unwrap();
        assert_eq!(got, d);
        let slab = seg.slab(0);
        slab.claim_chain(
            got.buffer,
            got.len,
            crate::shm::slab::Owner::Agent(1),
            crate::shm::slab::Owner::Supervisor,
        )
        .unwrap();
        assert_eq!(
            slab.read_payload(got.buffer, got.len, crate::shm::slab::Owner::Supervisor)
                .unwrap(),
            vec![9u8; 700]
        );
        slab.release_chain(got.buffer, got.len, crate::shm::slab::Owner::Supervisor)
            .unwrap();
        assert_eq!(slab.free_in(Owner::Supervisor), 8);
        assert_eq!(slab.free_in(Owner::Agent(1)), 4);
        assert_eq!(slab.free_count(), 16);
        // The supervisor sees the agent's heartbeat through its own mapping.
        agent.heartbeat(1).unwrap().begin(3, 1234);
        assert_eq!(seg.heartbeat(1).unwrap().reported_pid(), 1234);
        // The doorbell: the agent's wake is the supervisor's word.
        let token = seg.doorbell().prepare();
        agent.doorbell().wake();
        seg.doorbell()
            .sleep(token, Some(std::time::Duration::from_secs(5)));
        seg.doorbell().finish();
    }

    /// Page buffers by owner: each pool is where the layout says, an agent finds only its
    /// own and the supervisor's, and allocates only from its own.
    #[test]
    fn each_owner_allocates_from_its_own_pool_and_an_agent_sees_no_other() {
        let seg = Segment::create(small()).unwrap();
        let agent = reopen(&seg, 1).unwrap();
        let (sup, mine) = (seg.slab(0), agent.slab(0).lowest_first());
        assert_eq!(sup.count(), 16);
        assert_eq!(sup.storage().pool(Owner::Agent(1)), 12..16);
        assert_eq!(sup.storage().pool(Owner::Agent(7)), 8..8);
        let h = mine.alloc(Owner::Agent(1)).unwrap();
        assert_eq!(h.index, 12, "the lowest buffer of its pool first");
        assert!(
            mine.alloc(Owner::Agent(0)).is_err(),
            "slot 0's pool is not mapped here"
        );
        assert!(mine.words(8).is_none() && mine.words(11).is_none());
        assert!(
            mine.words(0).is_some(),
            "the supervisor's pool is (read-only)"
        );
        // The supervisor sees the agent's words through its own mapping.
        let (word, _) = sup.words(12).unwrap();
        assert_eq!(word.load(Ordering::Relaxed), Owner::Agent(1).encode());
        // A buffer of the supervisor's pool is never an agent's, whatever its word says.
        let s = sup.alloc(Owner::Supervisor).unwrap();
        assert!(s.index < 8);
        sup.words(s.index)
            .unwrap()
            .0
            .store(Owner::Agent(1).encode(), Ordering::Relaxed);
        assert!(matches!(
            sup.claim_chain(s.to_raw(), 0, Owner::Agent(1), Owner::Supervisor),
            Err(crate::shm::slab::SlabError::BadHandle {
                reason: "outside the holder's own pool",
                ..
            })
        ));
        // ...and the sweep frees such a word.
        assert_eq!(sup.sweep(2, |_| false), 1);
        assert_eq!(sup.free_in(Owner::Supervisor), 8);
        // The agent's buffers are in its slot file: the layout puts its pool there.
        let l = seg.layout();
        assert!(l.slot_pool.buffers.offset + 4 * 256 <= l.slot_size);
        assert_eq!(
            l.common_size, 4096,
            "the common file holds the doorbell only"
        );
    }
}
