//! The shared segment: one anonymous memory file (`memfd`) mapped `MAP_SHARED` by the
//! supervisor and inherited by each agent across fork/exec as a file descriptor.
//!
//! Because the segment has no name, no crash can leave one behind: the kernel frees the
//! memory when the last process holding the descriptor or a mapping exits. The size is fixed
//! at creation, reserved up front with `fallocate` (so a lack of memory fails at start with a
//! clear error rather than as a `SIGBUS` later) and sealed against shrinking and growing (so a
//! misbehaving agent cannot truncate the file under the supervisor's mapping).
//!
//! # Layout
//!
//! ```text
//! offset 0      SegmentHeader (magic, version, sizes, region table)   one 4 KiB page
//!               Control       supervisor doorbell (futex), shutdown word  one 4 KiB page
//!               Heartbeats    agent_slots × 64 B                       page aligned
//!               Rings         agent_slots × 2 × (512 B header + capacity × 48 B)
//!                             [slot 0 to-agent][slot 0 from-agent][slot 1 to-agent]...
//!               Ledger        SlabControl 128 B | owner words count × 4 B | BufferMeta count × 16 B
//!               Buffers       buffer_count × buffer_size              page aligned
//! ```
//!
//! Every region is named in the header by offset and size (never by pointer). The layout is
//! a pure function of the [`SegmentConfig`] ([`Layout::compute`]); [`Segment::open`] recomputes
//! it from the header's configuration fields and compares region by region, so a segment
//! that does not fit is refused with the exact reason ([`SegmentError`]).
//!
//! The creator builds the segment in two phases: it fills in the header and the regions,
//! then sets `ready` with a Release store; openers Acquire `ready` before trusting anything.
//! The supervisor never rereads the header after creation: it keeps its own [`Layout`].

use crate::shm::descriptor::Descriptor;
use crate::shm::futex::WaitWord;
use crate::shm::heartbeat::HeartbeatWord;
use crate::shm::plain::SharedLine;
use crate::shm::ring::{Consumer, Producer, RingHeader, RingSides, RingStorage};
use crate::shm::slab::{BufferMeta, Slab, SlabControl, SlabStorage};
use crate::shm::sync::{AtomicU32, Ordering, UnsafeCell};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// First eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"NFSWARM\0";
/// Layout version; bumped on any change to a shared structure or to what crosses the
/// rings (2: inline inputs, panicked completions, task-error frames, waiting for room).
pub const VERSION: u32 = 2;
/// Bytes reserved for the header at offset 0.
pub const HEADER_REGION: u64 = 4096;
const PAGE: u64 = 4096;
const LINE: u64 = 128;

/// Most agent slots a segment can have.
pub const MAX_AGENT_SLOTS: u32 = 4096;
/// Largest ring capacity.
pub const MAX_RING_CAPACITY: u32 = 1 << 20;

/// An offset and a size inside the segment.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    /// Bytes from the start of the segment.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// The header at offset 0.
#[repr(C)]
#[derive(Debug)]
pub struct SegmentHeader {
    magic: [u8; 8],
    version: u32,
    header_size: u32,
    total_size: u64,
    agent_slots: u32,
    ring_capacity: u32,
    descriptor_size: u32,
    buffer_size: u32,
    buffer_count: u32,
    /// 0 while the creator builds the segment, 1 once it is ready.
    ready: AtomicU32,
    control: Region,
    heartbeats: Region,
    rings: Region,
    ledger: Region,
    buffers: Region,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<SegmentHeader>() == 128);
const _: () = assert!(std::mem::size_of::<SegmentHeader>() as u64 <= HEADER_REGION);

/// Words shared by the supervisor and all agents.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Control {
    /// Agents ring this after publishing completions; the supervisor sleeps on it when idle.
    pub doorbell: SharedLine<WaitWord>,
    /// Nonzero asks every agent to exit at its next wake-up.
    pub shutdown: SharedLine<AtomicU32>,
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
    /// Page buffers in the slab.
    pub buffer_count: u32,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            agent_slots: 16,
            ring_capacity: 1024,
            buffer_size: 64 * 1024,
            buffer_count: 1024,
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
    /// Total bytes.
    pub total_size: u64,
    /// Supervisor-wide words.
    pub control: Region,
    /// Heartbeat lines.
    pub heartbeats: Region,
    /// All rings.
    pub rings: Region,
    /// Bytes per ring (header and slots), a multiple of 128.
    pub ring_stride: u64,
    /// Slab control, owner words and buffer metadata.
    pub ledger: Region,
    /// Offset of the owner words from the start of the segment.
    pub owners_offset: u64,
    /// Offset of the buffer metadata from the start of the segment.
    pub metas_offset: u64,
    /// The page buffers.
    pub buffers: Region,
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
        if c.buffer_count == 0 || c.buffer_count == u32::MAX {
            return bad(format!("buffer_count is {}", c.buffer_count));
        }
        let overflow = || SegmentError::BadConfig("segment size overflows".into());
        let desc = std::mem::size_of::<Descriptor>() as u64;
        let ring_header = std::mem::size_of::<RingHeader>() as u64;
        let slots = c.agent_slots as u64;

        let control = Region {
            offset: HEADER_REGION,
            size: std::mem::size_of::<Control>() as u64,
        };
        let heartbeats = Region {
            offset: HEADER_REGION + PAGE,
            size: slots * std::mem::size_of::<HeartbeatWord>() as u64,
        };
        let rings_off = round_up(heartbeats.offset + heartbeats.size, PAGE).ok_or_else(overflow)?;
        let ring_stride =
            round_up(ring_header + c.ring_capacity as u64 * desc, LINE).ok_or_else(overflow)?;
        let rings = Region {
            offset: rings_off,
            size: ring_stride.checked_mul(slots * 2).ok_or_else(overflow)?,
        };
        let ledger_off = round_up(rings.offset + rings.size, PAGE).ok_or_else(overflow)?;
        let count = c.buffer_count as u64;
        let owners_offset = ledger_off + std::mem::size_of::<SlabControl>() as u64;
        let metas_offset = round_up(owners_offset + count * 4, LINE).ok_or_else(overflow)?;
        let ledger_end = metas_offset + count * std::mem::size_of::<BufferMeta>() as u64;
        let ledger = Region {
            offset: ledger_off,
            size: ledger_end - ledger_off,
        };
        let buffers_off = round_up(ledger_end, PAGE).ok_or_else(overflow)?;
        let buffers = Region {
            offset: buffers_off,
            size: count
                .checked_mul(c.buffer_size as u64)
                .ok_or_else(overflow)?,
        };
        let total_size = round_up(
            buffers
                .offset
                .checked_add(buffers.size)
                .ok_or_else(overflow)?,
            PAGE,
        )
        .ok_or_else(overflow)?;
        if total_size > isize::MAX as u64 {
            return Err(overflow());
        }
        Ok(Layout {
            config,
            total_size,
            control,
            heartbeats,
            rings,
            ring_stride,
            ledger,
            owners_offset,
            metas_offset,
            buffers,
        })
    }

    fn ring_offset(&self, slot: u32, dir: Direction) -> u64 {
        self.rings.offset + (slot as u64 * 2 + dir as u64) * self.ring_stride
    }
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
    /// A region past the end of the segment.
    #[error("region {name} at {offset}+{size} lies outside the {total}-byte segment")]
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

/// A mapped segment, shared with agents.
#[derive(Debug)]
pub struct Segment {
    fd: OwnedFd,
    map: memmap2::MmapRaw,
    layout: Layout,
    /// Ring endpoints held in this process: `(slot * 2 + dir) * 2 + side`.
    endpoints: Box<[AtomicBool]>,
}

impl Segment {
    /// Creates, reserves, seals, maps and initialises a new segment.
    pub fn create(config: SegmentConfig) -> Result<Arc<Segment>, SegmentError> {
        let (seg, rest) = Self::create_deferred(config)?;
        rest.wait()?;
        Ok(seg)
    }

    /// As [`Segment::create`], but only the regions before the page buffers are reserved
    /// on return; the buffers (most of the segment) are reserved by a thread, while the
    /// caller starts its agents. [`Reservation::wait`] says how that went; nothing may
    /// lend a buffer before it has returned `Ok`.
    pub fn create_deferred(
        config: SegmentConfig,
    ) -> Result<(Arc<Segment>, Reservation), SegmentError> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        use nix::sys::memfd::{memfd_create, MFdFlags};

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
        let fd = memfd_create(
            "neuralflow-swarm",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(os("memfd_create"))?;
        nix::unistd::ftruncate(&fd, layout.total_size as i64).map_err(os("ftruncate"))?;
        // NB: reserving the pages up front is what turns "no memory" into an error here
        // instead of a SIGBUS on first touch of some page later. It also charges them to
        // the creator's memory cgroup, not to whichever agent touches a page first.
        let buffers = layout.buffers.offset.min(layout.total_size);
        reserve(&fd, 0, buffers, layout.total_size)?;
        let rest_fd = fd.try_clone().map_err(|e| SegmentError::Os {
            what: "dup segment fd",
            source: e,
        })?;
        let total = layout.total_size;
        let rest = std::thread::Builder::new()
            .name("swarm-reserve".into())
            .spawn(move || reserve(&rest_fd, buffers, total - buffers, total))
            .map_err(|e| SegmentError::Os {
                what: "spawn reservation thread",
                source: e,
            })?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )
        .map_err(os("seal segment"))?;
        let seg = Self::map(fd, layout)?;
        seg.initialise();
        Ok((Arc::new(seg), Reservation(rest)))
    }

    /// Opens a segment inherited as `fd`, validating everything in its header.
    pub fn open(fd: OwnedFd) -> Result<Arc<Segment>, SegmentError> {
        let size = nix::sys::stat::fstat(&fd)
            .map_err(os("fstat segment"))?
            .st_size as u64;
        if size < HEADER_REGION {
            return Err(SegmentError::TooSmall { size });
        }
        let map = memmap2::MmapOptions::new()
            .len(size as usize)
            .map_raw(&File::from(fd.try_clone().map_err(|e| {
                SegmentError::Os {
                    what: "dup segment fd",
                    source: e,
                }
            })?))
            .map_err(|e| SegmentError::Os {
                what: "mmap segment",
                source: e,
            })?;
        // SAFETY: the mapping is at least HEADER_REGION bytes and page aligned, so a
        // SegmentHeader (112 bytes, align 8) fits at offset 0. Its fields are integers (and
        // one atomic), valid for any bit pattern.
        let header = unsafe { &*(map.as_ptr() as *const SegmentHeader) };
        let layout = validate(header, size)?;
        Ok(Arc::new(Segment {
            fd,
            map,
            layout,
            endpoints: new_endpoints(layout.config.agent_slots),
        }))
    }

    /// Opens a segment from an inherited descriptor number.
    ///
    /// # Safety
    ///
    /// `fd` must be an open descriptor that nothing else in this process owns or closes.
    pub unsafe fn open_raw(fd: RawFd) -> Result<Arc<Segment>, SegmentError> {
        // SAFETY: guaranteed by the caller.
        Self::open(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn map(fd: OwnedFd, layout: Layout) -> Result<Segment, SegmentError> {
        let file = File::from(fd.try_clone().map_err(|e| SegmentError::Os {
            what: "dup segment fd",
            source: e,
        })?);
        let map = memmap2::MmapOptions::new()
            .len(layout.total_size as usize)
            .map_raw(&file)
            .map_err(|e| SegmentError::Os {
                what: "mmap segment",
                source: e,
            })?;
        Ok(Segment {
            fd,
            map,
            layout,
            endpoints: new_endpoints(layout.config.agent_slots),
        })
    }

    /// Phase two of creation: the memory is zero (fresh memfd), which is a valid empty state
    /// for rings, heartbeats and the ledger; write the header, then publish `ready`.
    fn initialise(&self) {
        let l = &self.layout;
        let h = SegmentHeader {
            magic: MAGIC,
            version: VERSION,
            header_size: std::mem::size_of::<SegmentHeader>() as u32,
            total_size: l.total_size,
            agent_slots: l.config.agent_slots,
            ring_capacity: l.config.ring_capacity,
            descriptor_size: std::mem::size_of::<Descriptor>() as u32,
            buffer_size: l.config.buffer_size,
            buffer_count: l.config.buffer_count,
            ready: AtomicU32::new(0),
            control: l.control,
            heartbeats: l.heartbeats,
            rings: l.rings,
            ledger: l.ledger,
            buffers: l.buffers,
        };
        let p = self.map.as_mut_ptr() as *mut SegmentHeader;
        // SAFETY: offset 0 of a page-aligned mapping of at least HEADER_REGION bytes; no
        // other process has the descriptor yet, so nobody reads it concurrently.
        unsafe { p.write(h) };
        // Release: SYNC POINT (segment built): the header and zeroed regions are complete
        // before `ready` reads 1; pairs with the Acquire in `validate`.
        self.header().ready.store(1, Ordering::Release);
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: see `open`; the header lives at offset 0 for the mapping's lifetime.
        unsafe { &*(self.map.as_ptr() as *const SegmentHeader) }
    }

    /// The descriptor agents inherit.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The raw descriptor number.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
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

    fn at<T>(&self, offset: u64) -> *mut T {
        debug_assert!(offset + std::mem::size_of::<T>() as u64 <= self.layout.total_size);
        // SAFETY: callers pass offsets from the validated layout, inside the mapping.
        unsafe { self.map.as_mut_ptr().add(offset as usize) as *mut T }
    }

    /// The supervisor-wide words.
    pub fn control(&self) -> &Control {
        // SAFETY: the control region lies at a page-aligned offset inside the mapping and is
        // `size_of::<Control>()` bytes; atomics only, valid for any bit pattern.
        unsafe { &*self.at::<Control>(self.layout.control.offset) }
    }

    /// The heartbeat line of `slot`.
    pub fn heartbeat(&self, slot: u32) -> Result<&HeartbeatWord, SegmentError> {
        self.check_slot(slot)?;
        let off = self.layout.heartbeats.offset + slot as u64 * 64;
        // SAFETY: `slot` is in range, so the line lies in the heartbeats region; it is 64-byte
        // aligned (page-aligned region, 64-byte stride); zeroed or agent-written memory is a
        // valid `HeartbeatWord` (atomics only).
        Ok(unsafe { &*self.at::<HeartbeatWord>(off) })
    }

    /// Both sides of one ring (for monitoring and resets).
    pub fn ring_sides(&self, slot: u32, dir: Direction) -> Result<RingSides<'_>, SegmentError> {
        self.check_slot(slot)?;
        // SAFETY: in range, 128-byte aligned (page-aligned region, 128-multiple stride);
        // atomics only, valid for any bit pattern.
        let header = unsafe { &*self.at::<RingHeader>(self.layout.ring_offset(slot, dir)) };
        Ok(header.sides())
    }

    fn endpoint(
        self: &Arc<Self>,
        slot: u32,
        dir: Direction,
        side: usize,
    ) -> Result<SegmentRing, SegmentError> {
        self.check_slot(slot)?;
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
        let off = self.layout.ring_offset(slot, dir);
        Ok(SegmentRing {
            segment: self.clone(),
            header: self.at::<RingHeader>(off),
            slots: self
                .at::<UnsafeCell<Descriptor>>(off + std::mem::size_of::<RingHeader>() as u64),
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
    if h.total_size != actual_size {
        return Err(SegmentError::SizeMismatch {
            what: "segment (header's total vs. file)",
            found: h.total_size,
            expected: actual_size,
        });
    }
    let regions = [
        ("control", h.control),
        ("heartbeats", h.heartbeats),
        ("rings", h.rings),
        ("ledger", h.ledger),
        ("buffers", h.buffers),
    ];
    for (name, r) in regions {
        if r.offset
            .checked_add(r.size)
            .is_none_or(|end| end > actual_size)
        {
            return Err(SegmentError::RegionOutOfBounds {
                name,
                offset: r.offset,
                size: r.size,
                total: actual_size,
            });
        }
    }
    let layout = Layout::compute(SegmentConfig {
        agent_slots: h.agent_slots,
        ring_capacity: h.ring_capacity,
        buffer_size: h.buffer_size,
        buffer_count: h.buffer_count,
    })?;
    let expected = [
        layout.control,
        layout.heartbeats,
        layout.rings,
        layout.ledger,
        layout.buffers,
    ];
    for ((name, found), expected) in regions.into_iter().zip(expected) {
        if found != expected {
            return Err(SegmentError::RegionMismatch {
                name,
                found,
                expected,
            });
        }
    }
    if layout.total_size != actual_size {
        return Err(SegmentError::SizeMismatch {
            what: "segment (computed from configuration vs. file)",
            found: layout.total_size,
            expected: actual_size,
        });
    }
    Ok(layout)
}

/// A ring inside a segment; keeps the segment mapped while an endpoint lives.
#[derive(Debug)]
pub struct SegmentRing {
    segment: Arc<Segment>,
    header: *mut RingHeader,
    slots: *mut UnsafeCell<Descriptor>,
    capacity: usize,
    claim: usize,
}

// SAFETY: the pointers target the segment's mapping, which the `Arc` keeps alive; the ring
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

// SAFETY: header and slots lie inside the validated rings region of a mapping kept alive by
// `segment`; the slot count is the configured power-of-two capacity; `UnsafeCell<Descriptor>`
// is `repr(transparent)` over a `Plain` type, so any bytes there are a valid value.
unsafe impl RingStorage<Descriptor> for SegmentRing {
    fn sides(&self) -> RingSides<'_> {
        // SAFETY: see the impl's safety comment.
        unsafe { &*self.header }.sides()
    }
    fn slots(&self) -> &[UnsafeCell<Descriptor>] {
        // SAFETY: see the impl's safety comment.
        unsafe { std::slice::from_raw_parts(self.slots, self.capacity) }
    }
}

/// The slab inside a segment.
#[derive(Debug, Clone)]
pub struct SegmentSlab {
    segment: Arc<Segment>,
}

// SAFETY: the ledger arrays and buffers lie in validated, non-overlapping regions of a
// mapping kept alive by `segment`; both arrays have `buffer_count` (< u32::MAX) entries.
unsafe impl SlabStorage for SegmentSlab {
    fn control(&self) -> &SlabControl {
        // SAFETY: start of the ledger region, page aligned; atomics only.
        unsafe {
            &*self
                .segment
                .at::<SlabControl>(self.segment.layout.ledger.offset)
        }
    }
    fn owners(&self) -> &[AtomicU32] {
        let l = &self.segment.layout;
        // SAFETY: `buffer_count` owner words at a 128-aligned offset inside the ledger.
        unsafe {
            std::slice::from_raw_parts(
                self.segment.at::<AtomicU32>(l.owners_offset),
                l.config.buffer_count as usize,
            )
        }
    }
    fn metas(&self) -> &[BufferMeta] {
        let l = &self.segment.layout;
        // SAFETY: `buffer_count` metadata entries at a 128-aligned offset inside the ledger.
        unsafe {
            std::slice::from_raw_parts(
                self.segment.at::<BufferMeta>(l.metas_offset),
                l.config.buffer_count as usize,
            )
        }
    }
    fn buffer_size(&self) -> usize {
        self.segment.layout.config.buffer_size as usize
    }
    fn data_ptr(&self, index: u32) -> *mut u8 {
        let l = &self.segment.layout;
        debug_assert!(index < l.config.buffer_count);
        self.segment
            .at::<u8>(l.buffers.offset + index as u64 * l.config.buffer_size as u64)
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
        }
    }

    fn reopen(seg: &Segment) -> Result<Arc<Segment>, SegmentError> {
        Segment::open(seg.fd.try_clone().unwrap())
    }

    fn header_mut(seg: &Segment) -> *mut SegmentHeader {
        seg.map.as_mut_ptr() as *mut SegmentHeader
    }

    #[test]
    fn create_then_open_agrees() {
        let seg = Segment::create(small()).unwrap();
        let other = reopen(&seg).unwrap();
        assert_eq!(other.layout(), seg.layout());
    }

    #[test]
    fn segment_is_sealed_against_resizing() {
        let seg = Segment::create(small()).unwrap();
        assert!(nix::unistd::ftruncate(seg.fd(), 4096).is_err());
        assert!(nix::unistd::ftruncate(seg.fd(), seg.layout().total_size as i64 * 2).is_err());
    }

    #[test]
    fn open_reports_exactly_what_is_wrong() {
        let seg = Segment::create(small()).unwrap();
        let h = header_mut(&seg);
        // SAFETY: single-threaded; we restore every field we change.
        unsafe {
            (*h).magic[0] = b'X';
            assert!(matches!(reopen(&seg), Err(SegmentError::WrongMagic { .. })));
            (*h).magic = MAGIC;
            (*h).version = 99;
            assert!(matches!(
                reopen(&seg),
                Err(SegmentError::WrongVersion { found: 99 })
            ));
            (*h).version = VERSION;
            (*h).buffers.offset = u64::MAX - 10;
            let e = reopen(&seg).unwrap_err();
            assert!(
                matches!(
                    e,
                    SegmentError::RegionOutOfBounds {
                        name: "buffers",
                        ..
                    }
                ),
                "{e}"
            );
            (*h).buffers.offset = seg.layout().buffers.offset;
            (*h).ledger.offset += 128;
            let e = reopen(&seg).unwrap_err();
            assert!(
                matches!(e, SegmentError::RegionMismatch { name: "ledger", .. }),
                "{e}"
            );
            (*h).ledger.offset -= 128;
            (*h).ring_capacity = 3;
            assert!(matches!(reopen(&seg), Err(SegmentError::BadConfig(_))));
            (*h).ring_capacity = 16;
            (*h).total_size += 1;
            assert!(matches!(
                reopen(&seg),
                Err(SegmentError::SizeMismatch { .. })
            ));
            (*h).total_size -= 1;
            (*h).ready.store(0, Ordering::Relaxed);
            assert!(matches!(reopen(&seg), Err(SegmentError::NotReady)));
            (*h).ready.store(1, Ordering::Relaxed);
        }
        reopen(&seg).unwrap();
    }

    #[test]
    fn too_small_file_is_refused() {
        let fd =
            nix::sys::memfd::memfd_create("t", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 100).unwrap();
        assert!(matches!(
            Segment::open(fd),
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

    #[test]
    fn ring_and_slab_in_segment() {
        let seg = Segment::create(small()).unwrap();
        let mut tx = seg.producer(1, Direction::FromAgent).unwrap();
        let mut rx = seg.consumer(1, Direction::FromAgent).unwrap();
        let slab = seg.slab(0);
        let h = slab
            .write_payload(crate::shm::slab::Owner::Agent(1), &[9u8; 700])
            .unwrap();
        let mut d = Descriptor::new(42, 1, 7);
        d.buffer = h.to_raw();
        d.len = 700;
        tx.push(d).unwrap();
        let got = rx.pop().unwrap();
        assert_eq!(got, d);
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
        assert_eq!(slab.free_count(), 8);
    }
}
